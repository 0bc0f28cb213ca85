"""Settings every service reads from its environment, built once at start."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Settings(BaseSettings):
    """Configuration of a gateway process; the README's Configuration table
    lists the variables."""

    model_config = SettingsConfigDict(
        env_prefix="BYOM_", extra="ignore", populate_by_name=True
    )

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias="NATS_URL")
    data_dir: Path = Path(".byom")
    auth_secret: str | None = None
    auth_public_key: str | None = None
    secret_key: str | None = None
    provider_timeout_s: float = 60.0
    """Longest wait for provider bytes; the other ``provider_*`` fields bound
    the handshake and the retries (docs/providers.md, Settings)."""
    provider_connect_timeout_s: float = 10.0
    provider_retry_budget_s: float = 30.0
    provider_max_attempts: int = 4
    limiter_timeout_s: float = 0.5
    request_timeout_s: float = 5.0
    stream_replicas: int = 1
    instance: str = Field(default_factory=_instance_id)
    log_level: str = "INFO"
    stream_prefix: str = ""
    """Prefix for stream, consumer and bucket names, so tests and deployments
    that share one NATS server never touch each other's state."""
    subject_prefix: str = "byom"
    """First token of every subject; tests give each run its own."""
    metering_replica: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,32}$")
    """Name of this metering replica's copy. Each replica keeps a whole copy
    of the usage records, read through its own durable consumer; the first
    one may leave it empty (docs/metering.md, Replicas)."""
