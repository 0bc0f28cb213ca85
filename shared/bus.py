"""Connecting to NATS and declaring the JetStream streams of the contract.

Streams are declared here, in one explicit bootstrap step, never by a
subscriber as a side effect: a mismatch is reported instead of silently
rewriting a stream.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoServersError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from shared.errors import Unavailable
from shared.logs import get_logger
from shared.settings import Settings
from shared.subjects import Subjects

_log = get_logger(__name__)

USAGE_DUPLICATE_WINDOW_S = 24 * 3600.0
"""How long JetStream remembers a usage event's Nats-Msg-Id to drop a
republished copy; metering's own store de-duplicates beyond that."""

LIMITER_JOURNAL_AGE_S = 600.0
"""How long limiter decisions stay in the journal: far longer than the 61 s
a window holds and than the 5 s between snapshots (docs/limits.md)."""

LIMITER_MEMBERS_TTL_S = 60.0
"""A limiter that stopped renewing its member key is forgotten after this."""


async def _on_error(exc: Exception) -> None:
    _log.warning("nats_error", error=str(exc) or type(exc).__name__)


async def _on_disconnected() -> None:
    _log.warning("nats_disconnected")


async def _on_reconnected() -> None:
    _log.info("nats_reconnected")


def servers_and_credentials(url: str) -> tuple[list[str], str | None, str | None]:
    """Split a ``NATS_URL`` listing servers by commas; find its user and password.

    The credentials are returned apart because nats-py sends those of the
    URL it is connected to, and a cluster member it learned of by gossip has
    none in its URL: passed as options, they go to every member.
    """
    servers = [server.strip() for server in url.split(",") if server.strip()]
    for server in servers:
        parts = urlsplit(server)
        if parts.username is not None and parts.password is not None:
            return servers, parts.username, parts.password
    return servers, None, None


def redacted(url: str) -> str:
    """Return ``NATS_URL`` with every password replaced, for logs and errors."""
    servers, _, _ = servers_and_credentials(url)
    shown = []
    for server in servers:
        parts = urlsplit(server)
        if parts.password is None:
            shown.append(server)
            continue
        host = parts.netloc.rpartition("@")[2]
        shown.append(parts._replace(netloc=f"{parts.username}:***@{host}").geturl())
    return ",".join(shown)


async def connect(settings: Settings, name: str) -> NatsClient:
    """Open a NATS connection that reconnects forever once established.

    ``NATS_URL`` may list several servers of a cluster, comma-separated, and
    carry ``user:password@``.
    """
    servers, user, password = servers_and_credentials(settings.nats_url)
    try:
        return await nats.connect(
            servers,
            user=user,
            password=password,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            allow_reconnect=True,
            error_cb=_on_error,
            disconnected_cb=_on_disconnected,
            reconnected_cb=_on_reconnected,
        )
    except (NoServersError, OSError, TimeoutError) as exc:
        raise Unavailable(
            f"cannot reach NATS at {redacted(settings.nats_url)}: {exc}"
        ) from exc


def stream_configs(subjects: Subjects, replicas: int) -> list[StreamConfig]:
    """Describe the contract's two streams for this deployment."""
    registry = StreamConfig(
        name=subjects.registry_stream,
        subjects=[subjects.registry_events],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=120.0,
    )
    usage = StreamConfig(
        name=subjects.usage_stream,
        subjects=[subjects.usage_all],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
        duplicate_window=USAGE_DUPLICATE_WINDOW_S,
        max_age=30 * 24 * 3600.0,
    )
    journal = StreamConfig(
        name=subjects.limiter_journal_stream,
        subjects=[subjects.limiter_journal_all],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
        duplicate_window=60.0,
        max_age=LIMITER_JOURNAL_AGE_S,
    )
    return [registry, usage, journal]


def bucket_configs(subjects: Subjects, replicas: int) -> list[KeyValueConfig]:
    """Describe the limiter's KV buckets: leases, members and snapshots."""
    return [
        KeyValueConfig(
            bucket=subjects.limiter_owners_bucket, history=1, replicas=replicas
        ),
        KeyValueConfig(
            bucket=subjects.limiter_members_bucket,
            history=1,
            ttl=LIMITER_MEMBERS_TTL_S,
            replicas=replicas,
        ),
        KeyValueConfig(
            bucket=subjects.limiter_snapshots_bucket, history=1, replicas=replicas
        ),
    ]


async def bootstrap(js: JetStreamContext, subjects: Subjects, replicas: int) -> None:
    """Create the streams and buckets when missing; leave existing ones be."""
    for config in stream_configs(subjects, replicas):
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
            _log.info("stream_created", stream=config.name, replicas=replicas)
    for bucket in bucket_configs(subjects, replicas):
        try:
            await js.key_value(bucket.bucket)
        except BucketNotFoundError:
            await js.create_key_value(bucket)
            _log.info("bucket_created", bucket=bucket.bucket, replicas=replicas)
