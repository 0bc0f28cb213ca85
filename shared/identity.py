"""Who is calling: JWT verification and development token minting.

Tokens are HS256 with ``BYOM_AUTH_SECRET``, or EdDSA / RS256 verified with
the PEM public key in ``BYOM_AUTH_PUBLIC_KEY``. ``exp`` is required, and a
few seconds of clock skew are tolerated.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from shared.errors import Unauthenticated

ADMIN_ROLE = "enrollment-admin"
CLOCK_SKEW_S = 5
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of one request."""

    user: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    expires_at: float = field(default=0.0, compare=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def principals(self) -> frozenset[str]:
        """The access-list entries that name this caller."""
        return frozenset(
            [f"user:{self.user}", *(f"group:{group}" for group in self.groups)]
        )


class TokenVerifier:
    """Verify bearer tokens, remembering recent good ones until they expire."""

    def __init__(self, *, secret: str | None, public_key: str | None) -> None:
        if public_key:
            self._key: Any = public_key
            self._algorithms = ["EdDSA", "RS256"]
        elif secret:
            self._key = secret
            self._algorithms = ["HS256"]
        else:
            raise ValueError(
                "no token key configured: set BYOM_AUTH_SECRET (HS256) "
                "or BYOM_AUTH_PUBLIC_KEY (a PEM public key for EdDSA or RS256)"
            )
        self._cache: OrderedDict[str, Principal] = OrderedDict()

    def verify_header(self, authorization: str | None) -> Principal:
        """Return the caller named by an ``Authorization: Bearer`` header."""
        if not authorization:
            raise Unauthenticated(
                "missing Authorization header: send 'Authorization: Bearer <JWT>'"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "malformed Authorization header: expected 'Bearer <JWT>'"
            )
        return self.verify(token.strip())

    def verify(self, token: str) -> Principal:
        """Return the caller a token names, or raise ``Unauthenticated``."""
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and cached.expires_at + CLOCK_SKEW_S > now:
            return cached
        principal = self._decode(token)
        self._remember(token, principal)
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired: get a new one") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        return _principal_from_claims(claims)

    def _remember(self, token: str, principal: Principal) -> None:
        self._cache[token] = principal
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    groups = claims.get("groups", [])
    roles = claims.get("roles", [])
    if not isinstance(sub, str) or not sub:
        raise Unauthenticated("invalid token: claim 'sub' must be a user id")
    if not _is_str_list(groups) or not _is_str_list(roles):
        raise Unauthenticated(
            "invalid token: claims 'groups' and 'roles' must be lists of strings"
        )
    return Principal(
        user=sub,
        groups=tuple(groups),
        roles=tuple(roles),
        expires_at=float(claims["exp"]),
    )


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def mint_token(
    secret: str,
    *,
    user: str,
    groups: Iterable[str] = (),
    admin: bool = False,
    ttl_s: int = 3600,
) -> str:
    """Sign an HS256 token for development and tests."""
    claims = {
        "sub": user,
        "groups": list(groups),
        "roles": [ADMIN_ROLE] if admin else [],
        "exp": int(time.time()) + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
