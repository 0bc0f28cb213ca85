"""The gateway's error tree, one class per error code of the public contract.

Every failure a caller can see is a ``ByomError``. Handlers raise them; the
transport turns them into ``{"error": {...}}`` replies with the
``Byom-Error`` header. Foreign exceptions (nats, httpx, sqlite) are caught
at the adapter that meets them and re-raised as one of these, chained.

    ByomError
    ├── Unauthenticated          unauthenticated
    ├── Forbidden                forbidden
    ├── InvalidRequest           invalid_request (field)
    ├── NotFound                 not_found
    ├── Conflict                 conflict
    ├── ModelDisabled            model_disabled
    ├── AccessNotEnabled         access_not_enabled
    ├── ApplicationUnsupported   application_unsupported
    ├── CapabilityUnsupported    capability_unsupported (capability)
    ├── RateLimited              rate_limited (scope, limit, retry_after_s)
    ├── ProviderError            provider_error (provider_status)
    ├── ProviderTimeout          provider_timeout
    └── Unavailable              unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar


class ByomError(Exception):
    """A failure the caller is told about, with a code from the contract."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_body(self) -> dict[str, Any]:
        """Return the error object of the contract's reply envelope."""
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class Unauthenticated(ByomError):
    code = "unauthenticated"


class Forbidden(ByomError):
    code = "forbidden"


class InvalidRequest(ByomError):
    code = "invalid_request"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field)
        self.field = field


class NotFound(ByomError):
    code = "not_found"


class Conflict(ByomError):
    code = "conflict"


class ModelDisabled(ByomError):
    code = "model_disabled"


class AccessNotEnabled(ByomError):
    code = "access_not_enabled"


class ApplicationUnsupported(ByomError):
    code = "application_unsupported"


class CapabilityUnsupported(ByomError):
    code = "capability_unsupported"

    def __init__(self, message: str, *, capability: str) -> None:
        super().__init__(message, capability=capability)
        self.capability = capability


class RateLimited(ByomError):
    code = "rate_limited"

    def __init__(
        self, message: str, *, scope: str, limit: str, retry_after_s: float
    ) -> None:
        super().__init__(message, scope=scope, limit=limit, retry_after_s=retry_after_s)
        self.scope = scope
        self.limit = limit
        self.retry_after_s = retry_after_s


class ProviderError(ByomError):
    code = "provider_error"

    def __init__(
        self, message: str, *, provider_status: int, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, provider_status=provider_status)
        self.provider_status = provider_status
        # Kept off the wire: only the retry loop reads it.
        self.retry_after_s = retry_after_s


class ProviderTimeout(ByomError):
    code = "provider_timeout"


class Unavailable(ByomError):
    code = "unavailable"


ERRORS_BY_CODE: dict[str, type[ByomError]] = {
    cls.code: cls
    for cls in (
        Unauthenticated,
        Forbidden,
        InvalidRequest,
        NotFound,
        Conflict,
        ModelDisabled,
        AccessNotEnabled,
        ApplicationUnsupported,
        CapabilityUnsupported,
        RateLimited,
        ProviderError,
        ProviderTimeout,
        Unavailable,
    )
}


def error_from_body(body: dict[str, Any]) -> ByomError:
    """Rebuild the error a reply carries, for clients of the gateway."""
    error = dict(body["error"])
    code = error.pop("code", "internal")
    message = error.pop("message", "")
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        unknown = ByomError(message, **error)
        unknown.code = code  # type: ignore[misc]
        return unknown
    exc = cls.__new__(cls)
    ByomError.__init__(exc, message, **error)
    for key, value in error.items():
        setattr(exc, key, value)
    return exc
