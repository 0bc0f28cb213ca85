"""Messages between the router and the limiter."""

from __future__ import annotations

from pydantic import BaseModel


class QuotaRequest(BaseModel):
    """Ask for one request's worth of quota on a model, at every level."""

    request_id: str
    model: str
    project: str
    user: str | None = None
    tokens: int


class Grant(BaseModel):
    """Quota taken; settle it with ``reservation`` when the call is done."""

    reservation: str


class Settlement(BaseModel):
    """The real usage of a reserved call; ``ok`` false refunds it."""

    reservation: str
    model: str
    project: str
    user: str | None = None
    tokens: int
    ok: bool = True
