"""Usage against limits: per minute, what each level of a model admitted.

The limiter counts a request when it admits it and keeps it unless the
call is refunded (it failed before the provider produced anything); it
counts the prompt and completion tokens the call really used. Metering
counts the same from usage events: an event is charged when its status is
``ok``, or ``error`` with tokens used. Rate-limited calls were never
admitted.

Levels follow the limiter: the enrollment, each project (70 percent of the
enrollment unless the registry says otherwise), and each user of
user-attributed applications. Limits are the ones in force now, from the
registry view. A calendar minute is one of the 60-second windows the
limiter checks, so a busier window may still straddle two minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.limiter.limits import RateLimit, project_limits
from services.metering.store import UsageStore, utc_text
from shared.applications import APPLICATIONS
from shared.contracts.usage import HeadroomQuery
from shared.errors import NotFound
from shared.registry_view import RegistryView

DEFAULT_WINDOW = timedelta(hours=1)
_SCOPE_ORDER = {"enrollment": 0, "project": 1, "user": 2}
_CHARGED = (
    "SELECT substr(time, 1, 16), project, user, application, COUNT(*), "
    "SUM(prompt_tokens + completion_tokens) FROM usage "
    "WHERE model = ? AND time >= ? AND time < ? "
    "AND (status = 'ok' OR (status = 'error' "
    "AND prompt_tokens + completion_tokens > 0)) "
    "GROUP BY 1, 2, 3, 4"
)
# (minute, scope, project or user) -> [requests, tokens]
Charges = dict[tuple[str, str, str | None], list[int]]


async def headroom(
    store: UsageStore, view: RegistryView, query: HeadroomQuery
) -> dict[str, Any]:
    """Answer a ``view: limits`` query for one model."""
    model = view.model(query.model)
    if model is None:
        raise NotFound(
            f"no registered model named {query.model!r}: "
            "see byom.registry.model.list for the names"
        )
    start, end = _range(query)
    charges = _charges(await store.select(_CHARGED, [query.model, start, end]))
    limits = _Limits(view, model)
    rows = [
        _row(key, used, limits)
        for key, used in sorted(charges.items(), key=_order)
        if _wanted(key, query)
    ]
    return {
        "model": query.model,
        "from": start,
        "to": end,
        "limits": model["limits"],
        "rows": rows,
    }


def _range(query: HeadroomQuery) -> tuple[str, str]:
    end = query.to or datetime.now(UTC) + timedelta(seconds=1)
    start = query.from_ or end - DEFAULT_WINDOW
    return utc_text(start), utc_text(end)


def _charges(rows: list[tuple[Any, ...]]) -> Charges:
    charges: Charges = {}
    for minute, project, user, application, requests, tokens in rows:
        parties: list[tuple[str, str | None]] = [
            ("enrollment", None),
            ("project", project),
        ]
        known = APPLICATIONS.get(application or "")
        if known is not None and known.user_attributed:
            parties.append(("user", user))
        for scope, party in parties:
            used = charges.setdefault((minute, scope, party), [0, 0])
            used[0] += requests
            used[1] += tokens or 0
    return charges


def _order(item: tuple[tuple[str, str, str | None], list[int]]) -> tuple[Any, ...]:
    minute, scope, party = item[0]
    return (minute, _SCOPE_ORDER[scope], party or "")


def _wanted(key: tuple[str, str, str | None], query: HeadroomQuery) -> bool:
    _, scope, party = key
    if scope == "project" and query.filters.project is not None:
        return party == query.filters.project
    if scope == "user" and query.filters.user is not None:
        return party == query.filters.user
    return True


class _Limits:
    """The model's limits at each level, as the limiter applies them now."""

    def __init__(self, view: RegistryView, model: dict[str, Any]) -> None:
        self._view = view
        self._rid = model["rid"]
        self.enrollment = RateLimit(**model["limits"]["enrollment"])
        self.user = RateLimit(**model["limits"].get("user", {}))

    def of(self, scope: str, party: str | None) -> RateLimit:
        if scope == "enrollment":
            return self.enrollment
        if scope == "user":
            return self.user
        overrides = self._view.project_limits.get((self._rid, party or ""), {})
        return project_limits(
            self.enrollment,
            percent=overrides.get("percent"),
            rpm=overrides.get("rpm"),
            tpm=overrides.get("tpm"),
        )


def _row(
    key: tuple[str, str, str | None], used: list[int], limits: _Limits
) -> dict[str, Any]:
    minute, scope, party = key
    limit = limits.of(scope, party)
    requests, tokens = used
    return {
        "minute": minute + ":00+00:00",
        "scope": scope,
        "party": party,
        "requests": requests,
        "tokens": tokens,
        "rpm": limit.rpm,
        "tpm": limit.tpm,
        "rpm_used_pct": _percent(requests, limit.rpm),
        "tpm_used_pct": _percent(tokens, limit.tpm),
        "rpm_headroom": None if limit.rpm is None else limit.rpm - requests,
        "tpm_headroom": None if limit.tpm is None else limit.tpm - tokens,
    }


def _percent(used: int, limit: int | None) -> float | None:
    return None if not limit else round(100 * used / limit, 1)
