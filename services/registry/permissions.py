"""Who may change what: enrollment administrators, and roles on a source.

A caller holds a role on a source directly (``user:<id>``) or through any
of its groups (``group:<name>``); the strongest one counts.
"""

from __future__ import annotations

from typing import Any

from shared.errors import Forbidden
from shared.identity import Principal

OWNER = ("owner",)
OWNER_OR_EDITOR = ("owner", "editor")
_RANK = {"owner": 3, "editor": 2, "viewer": 1}


def require_admin(caller: Principal) -> None:
    if not caller.is_admin:
        raise Forbidden(
            "only enrollment administrators may do this: "
            "ask one for the 'enrollment-admin' role"
        )


def source_role(source: dict[str, Any], caller: Principal) -> str | None:
    """Return the strongest role the caller holds on a source, if any."""
    held = [role for who, role in source["roles"].items() if who in caller.principals]
    return max(held, key=_RANK.__getitem__, default=None)


def require_source_role(
    source: dict[str, Any], caller: Principal, allowed: tuple[str, ...]
) -> None:
    """Refuse a caller who is not an administrator with one of ``allowed``."""
    require_admin(caller)
    role = source_role(source, caller)
    if role not in allowed:
        raise Forbidden(
            f"you need to be {' or '.join(allowed)} of source {source['name']!r} "
            f"(you are {role or 'not on its roles'}): ask an owner to share it"
        )
