"""Wire models of the registry: sources, models, access, project limits.

The ``*Spec`` models validate what an administrator sends; the plain models
are what replies and registry events carry. A source's secret appears only
in ``SourceSpec`` (inbound) and, encrypted, in ``SourceAuthSealed`` (events);
no outbound model has a field that could hold it in clear.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Provider = Literal[
    "openai",
    "azure_openai",
    "anthropic",
    "bedrock",
    "gemini",
    "xai",
    "openai_compatible",
]
Api = Literal[
    "openai_chat",
    "azure_openai_chat",
    "anthropic_messages",
    "bedrock_converse",
    "gemini_generate_content",
]
Capability = Literal[
    "streaming", "tool_calling", "structured_outputs", "reasoning", "vision"
]
Role = Literal["owner", "editor", "viewer"]

PROVIDERS: tuple[str, ...] = get_args(Provider)
APIS: tuple[str, ...] = get_args(Api)
CAPABILITIES: tuple[str, ...] = get_args(Capability)
ROLES: tuple[str, ...] = get_args(Role)

Name = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$",
    ),
]
Principal = Annotated[str, StringConstraints(pattern=r"^(user|group):[^\s]+$")]
PositiveInt = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoAuth(_Strict):
    type: Literal["none"]


class ApiKeyAuth(_Strict):
    type: Literal["api_key"]
    header: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]+$")] = "x-api-key"
    secret: Annotated[str, StringConstraints(min_length=1)]


class BearerAuth(_Strict):
    type: Literal["bearer"]
    secret: Annotated[str, StringConstraints(min_length=1)]


class AwsSigV4Auth(_Strict):
    type: Literal["aws_sigv4"]
    region: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")]
    access_key_id: Annotated[str, StringConstraints(min_length=1)]
    secret: Annotated[str, StringConstraints(min_length=1)]


class GoogleServiceAccountAuth(_Strict):
    type: Literal["google_service_account"]
    secret: Annotated[str, StringConstraints(min_length=2)]

    @field_validator("secret")
    @classmethod
    def _is_key_json(cls, value: str) -> str:
        import json

        try:
            parsed = json.loads(value)
        except ValueError:
            raise ValueError("must be the service account's key JSON") from None
        if not isinstance(parsed, dict) or "private_key" not in parsed:
            raise ValueError("must be a service account key JSON with private_key")
        return value


Auth = Annotated[
    NoAuth | ApiKeyAuth | BearerAuth | AwsSigV4Auth | GoogleServiceAccountAuth,
    Field(discriminator="type"),
]


def public_auth(auth: dict[str, Any]) -> dict[str, Any]:
    """Return an auth object with its secret removed, for replies and events."""
    return {key: value for key, value in auth.items() if key != "secret"}


class SourceSpec(_Strict):
    """The body of ``source.create``."""

    name: Name
    base_url: str
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    auth: Auth = NoAuth(type="none")
    exports_enabled: bool = True
    roles: dict[Principal, Role] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return check_base_url(value)


def check_base_url(value: str) -> str:
    """Accept an absolute http or https URL with a host and no query."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must start with http:// or https://, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"must name a host, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    return value.rstrip("/")


class SourceUpdate(_Strict):
    """The body of ``source.update``: the rid and the fields to change."""

    rid: str
    name: Name | None = None
    base_url: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    auth: Auth | None = None
    exports_enabled: bool | None = None

    @field_validator("base_url")
    @classmethod
    def _is_http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)


class Source(BaseModel):
    """A source as replies and events show it: never with its secret."""

    rid: str
    name: str
    base_url: str
    port: int | None = None
    auth: dict[str, Any]
    exports_enabled: bool
    roles: dict[str, str]
    created_at: str
    updated_at: str


class EndpointSpec(_Strict):
    api: Api
    path: Annotated[str, StringConstraints(pattern=r"^/[^\s?#]*$")]
    capabilities: list[Capability] = Field(default_factory=list)


class LevelLimits(_Strict):
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None

    @model_validator(mode="after")
    def _has_one(self) -> LevelLimits:
        if self.rpm is None and self.tpm is None:
            raise ValueError("set at least one of rpm and tpm")
        return self


class ModelLimits(_Strict):
    enrollment: LevelLimits
    user: LevelLimits


class ModelSpec(_Strict):
    """The body of ``model.register``."""

    source: str
    name: Name
    provider: Provider
    provider_model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    endpoints: Annotated[list[EndpointSpec], Field(min_length=1)]
    limits: ModelLimits
    context_window: PositiveInt | None = None
    max_output_tokens: PositiveInt | None = None


class ModelUpdate(_Strict):
    """The body of ``model.update``: the rid and the fields to change."""

    rid: str
    name: Name | None = None
    provider: Provider | None = None
    provider_model: Annotated[str, StringConstraints(min_length=1)] | None = None
    endpoints: Annotated[list[EndpointSpec], Field(min_length=1)] | None = None
    limits: ModelLimits | None = None
    context_window: PositiveInt | None = None
    max_output_tokens: PositiveInt | None = None


class Model(BaseModel):
    """A registered model as replies and events show it."""

    rid: str
    source: str
    name: str
    provider: str
    provider_model: str
    endpoints: list[dict[str, Any]]
    limits: dict[str, Any]
    context_window: int | None = None
    max_output_tokens: int | None = None
    enabled: bool = True
    created_at: str
    updated_at: str

    @property
    def capabilities(self) -> set[str]:
        return {cap for endpoint in self.endpoints for cap in endpoint["capabilities"]}


class AccessSpec(_Strict):
    """The body of ``access.set``; ``groups`` null means the whole enrollment."""

    enabled: bool
    groups: list[Annotated[str, StringConstraints(min_length=1)]] | None = None


class Access(BaseModel):
    enabled: bool = False
    groups: list[str] | None = None
    updated_at: str | None = None


class ProjectLimitsSpec(_Strict):
    """The body of ``project_limits.set``: a percent or absolute values."""

    model: str
    project: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    percent: Annotated[int, Field(ge=1, le=100)] | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None

    @model_validator(mode="after")
    def _percent_or_values(self) -> ProjectLimitsSpec:
        absolute = self.rpm is not None or self.tpm is not None
        if self.percent is not None and absolute:
            raise ValueError("give either percent or rpm/tpm, not both")
        if self.percent is None and not absolute:
            raise ValueError("give percent (1..100) or at least one of rpm and tpm")
        return self


class EmptyBody(_Strict):
    """The body of a list or an admin command: no fields."""


class RidBody(_Strict):
    """The body of a get, delete, disable or enable: the object's rid."""

    rid: Annotated[str, StringConstraints(min_length=1)]


ShareRole = Literal["owner", "editor", "viewer", "none"]


class SourceShare(_Strict):
    """The body of ``source.share``; role ``none`` removes the principal."""

    rid: Annotated[str, StringConstraints(min_length=1)]
    principal: Principal
    role: ShareRole


class ProjectLimitsQuery(_Strict):
    """The body of ``project_limits.get``: a model (rid or name) and a project."""

    model: Annotated[str, StringConstraints(min_length=1)]
    project: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class SelectorQuery(_Strict):
    """The body of ``selector``: the application asking for models."""

    application: Annotated[str, StringConstraints(min_length=1)]


NULLABLE_UPDATES = frozenset({"port", "context_window", "max_output_tokens"})
"""Fields an update may set to null to clear them; any other null is refused."""
