"""Registry events: every change, in order, with the version it produced."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

EventKind = Literal[
    "source.upserted",
    "source.deleted",
    "model.upserted",
    "model.deleted",
    "access.set",
    "project_limits.set",
]


class RegistryEvent(BaseModel):
    """One change to the registry's state.

    ``data`` is the whole new state of the object (a source carries its
    secret only sealed, as ``sealed_secret``), or ``{"rid": ...}`` for a
    deletion, so a reader never needs an earlier event to apply this one.
    """

    version: int
    kind: EventKind
    time: str
    data: dict[str, Any]
