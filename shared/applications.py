"""The platform's applications and what each needs from a model."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ApplicationUnsupported, InvalidRequest


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    user_attributed: bool
    needs: frozenset[str] = frozenset()


_AGENTIC = frozenset({"reasoning", "structured_outputs", "tool_calling"})

APPLICATIONS: dict[str, Application] = {
    app.name: app
    for app in (
        Application("ai-fde", user_attributed=True, needs=_AGENTIC),
        Application("aip-analyst", user_attributed=True, needs=_AGENTIC),
        Application("chatbot-studio", user_attributed=True),
        Application("workshop", user_attributed=True),
        Application("aip-logic", user_attributed=False),
        Application("functions", user_attributed=False),
        Application("pipeline-builder", user_attributed=False),
    )
}
UNSUPPORTED = frozenset({"aip-assist", "pipeline-builder-generate"})


def application(name: str | None) -> Application:
    """Look up the caller's application, refusing unknown and unsupported ones."""
    if not name:
        raise InvalidRequest(
            "missing Byom-Application header: name the calling application "
            f"(one of {', '.join(sorted(APPLICATIONS))})",
            field="Byom-Application",
        )
    found = APPLICATIONS.get(name)
    if found is not None:
        return found
    if name in UNSUPPORTED:
        raise ApplicationUnsupported(
            f"application {name!r} cannot use registered models"
        )
    known = ", ".join(sorted(APPLICATIONS))
    raise InvalidRequest(
        f"unknown application {name!r}: expected one of {known}",
        field="Byom-Application",
    )
