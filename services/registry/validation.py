"""Turning a bad registry body into ``invalid_request`` naming its field.

Pydantic puts the tag of a tagged union (``auth.api_key.secret``) into its
error paths; administrators wrote ``auth.secret``, so the tag is dropped.
Nothing under ``auth`` is echoed back: the bad value may be a secret.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.contracts.registry import NULLABLE_UPDATES
from shared.errors import InvalidRequest

_Spec = TypeVar("_Spec", bound=BaseModel)
_AUTH_TAGS = frozenset(
    {"none", "api_key", "bearer", "aws_sigv4", "google_service_account"}
)
_TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


def parse(spec: type[_Spec], body: dict[str, Any], whole: str = "") -> _Spec:
    """Validate a body against its spec, naming the first bad field.

    ``whole`` names the field to blame when a rule across fields fails (as
    "percent or rpm/tpm"), where pydantic has no field to point at.
    """
    try:
        parsed = spec.model_validate(body)
    except ValidationError as exc:
        raise _invalid(exc, whole) from exc
    return parsed


def parse_update(spec: type[_Spec], body: dict[str, Any]) -> _Spec:
    """Validate an update body; an explicit null clears only nullable fields."""
    parsed = parse(spec, body)
    _refuse_nulls(parsed)
    return parsed


def _invalid(exc: ValidationError, whole: str) -> InvalidRequest:
    first = exc.errors(include_url=False)[0]
    path = _field_path(first["loc"], first["type"]) or whole
    received = first.get("input")
    shown = ""
    if not path.startswith("auth") and not isinstance(received, dict | list):
        shown = f" (received {received!r})"
    return InvalidRequest(f"{path or 'body'}: {first['msg']}{shown}", field=path)


def _field_path(loc: tuple[int | str, ...], kind: str) -> str:
    # A bad dict key is reported at ``<key>.[key]``; the key is the field.
    parts = [str(part) for part in loc if part != "[key]"]
    kept = [
        part
        for index, part in enumerate(parts)
        if not (index > 0 and parts[index - 1] == "auth" and part in _AUTH_TAGS)
    ]
    if kind in _TAG_ERRORS:
        kept.append("type")
    return ".".join(kept)


def _refuse_nulls(parsed: BaseModel) -> None:
    """Refuse an explicit null for a field an update cannot clear."""
    for name in parsed.model_fields_set:
        if getattr(parsed, name) is None and name not in NULLABLE_UPDATES:
            raise InvalidRequest(
                f"{name}: must not be null; leave it out to keep its value",
                field=name,
            )
