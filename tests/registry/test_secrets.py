"""A source's secret is sealed at rest and never leaves the registry in clear.

One test drives every path a secret could leak through (replies, errors,
registry events, log lines, SQLite files) and greps them all for it; the
other rotates ``BYOM_SECRET_KEY`` with ``admin.reseal``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from nats.js.api import DeliverPolicy

from services.registry.app import build as build_registry
from shared.client import ByomClient
from shared.errors import ByomError
from shared.secrets import SecretBox, SecretBoxError
from tests.fakes.openai import API_KEY, FakeOpenAI, text
from tests.harness import Gateway
from tests.registry.conftest import model_body, source_body

AWS_SECRET = "aws-secret-wJalrXUtnFEMI-K7MDENG"
SECRETS = (API_KEY, AWS_SECRET, "new-" + API_KEY)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every rendered log line of this process while the test runs.

    Services cache their loggers, so reconfiguring would not reach them;
    a last processor appended to the shared processor list does.
    """
    lines: list[str] = []

    def tap(_logger: Any, _method: str, rendered: Any) -> Any:
        lines.append(str(rendered))
        return rendered

    processors = structlog.get_config()["processors"]
    processors.append(tap)
    yield lines
    processors.remove(tap)


@pytest.fixture
async def provider() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


async def registry_events(gateway: Gateway, client: ByomClient) -> list[bytes]:
    """Read every event of the registry stream, in order."""
    js = client.nc.jetstream()
    subjects = gateway.subjects
    info = await js.stream_info(subjects.registry_stream)
    subscription = await js.subscribe(
        subjects.registry_events,
        stream=subjects.registry_stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    events = [
        (await subscription.next_msg(timeout=2)).data
        for _ in range(info.state.messages)
    ]
    await subscription.unsubscribe()
    return events


def stored_bytes(data_dir: Path) -> bytes:
    """Every byte of every file the services keep (SQLite, WAL, journals)."""
    files = [path for path in sorted(data_dir.rglob("*")) if path.is_file()]
    return b"".join(path.read_bytes() for path in files)


async def exercise(
    gateway: Gateway, admin: ByomClient, provider: FakeOpenAI
) -> list[Any]:
    """Touch every registry path that handles a secret; return what came back."""
    replies: list[Any] = []
    source = await admin.registry(
        "source.create",
        source_body(
            base_url=provider.base_url, auth={"type": "bearer", "secret": API_KEY}
        ),
    )
    aws = source_body(
        auth={
            "type": "aws_sigv4",
            "region": "us-east-1",
            "access_key_id": "AKIA",
            "secret": AWS_SECRET,
        }
    )
    replies += [source, await admin.registry("source.create", aws)]
    rid = source["rid"]
    model = await admin.registry("model.register", model_body(rid, name="leaky"))
    await admin.registry("access.set", {"enabled": True, "groups": None})
    provider.queue(text("ok", prompt=3, completion=1))
    user = await gateway.client("alice")
    replies.append(
        await user.chat(
            {"model": "leaky", "messages": [{"role": "user", "content": "hi"}]},
            application="workshop",
            project="p",
        )
    )
    replies += [
        model,
        await admin.registry("source.get", {"rid": rid}),
        await admin.registry("source.list", {}),
        await admin.registry(
            "source.share", {"rid": rid, "principal": "group:ml", "role": "viewer"}
        ),
        await admin.registry("admin.reseal", {}),
        await admin.registry(
            "source.update",
            {"rid": rid, "auth": {"type": "bearer", "secret": "new-" + API_KEY}},
        ),
        await admin.registry("selector", {"application": "workshop"}),
    ]
    return replies + await refusals(admin, rid)


async def refusals(admin: ByomClient, rid: str) -> list[str]:
    """Bad bodies that carry a secret: the errors must not echo it."""
    bad = [
        (
            "source.create",
            source_body(auth={"type": "google_service_account", "secret": API_KEY}),
        ),
        ("source.create", source_body(auth=f"Bearer {API_KEY}")),
        (
            "source.create",
            source_body(auth={"type": "bearer", "secret": API_KEY, "x": 1}),
        ),
        (
            "source.update",
            {
                "rid": rid,
                "auth": {"type": "api_key", "secret": API_KEY, "header": "a b"},
            },
        ),
    ]
    messages = []
    for operation, body in bad:
        with pytest.raises(ByomError) as caught:
            await admin.registry(operation, body)
        messages.append(repr(caught.value.to_body()))
    return messages


async def test_no_secret_in_replies_events_logs_or_sqlite(
    gateway: Gateway, provider: FakeOpenAI, log_lines: list[str]
) -> None:
    admin = await gateway.client("root", admin=True)

    replies = await exercise(gateway, admin, provider)
    events = await registry_events(gateway, admin)
    logs = "\n".join(log_lines)
    stored = stored_bytes(Path(gateway.settings.data_dir))

    assert provider.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"
    assert '"registry_changed"' in logs
    assert any(b'"sealed_secret":"gAAAAA' in event for event in events)
    assert b"gAAAAA" in stored
    for secret in SECRETS:
        assert secret not in repr(replies)
        assert all(secret.encode() not in event for event in events)
        assert secret not in logs
        assert secret.encode() not in stored


async def test_reseal_moves_every_secret_to_the_new_first_key(
    gateway: Gateway,
) -> None:
    old_key = gateway.settings.secret_key
    assert old_key is not None
    admin = await gateway.client("root", admin=True)
    await admin.registry("source.create", source_body())
    await admin.registry("source.create", source_body(auth={"type": "none"}))

    new_key = SecretBox.generate_key()
    await restart_registry(gateway, secret_key=f"{new_key},{old_key}")
    reply = await admin.registry("admin.reseal", {})

    assert reply["resealed"] == 1
    sealed = sealed_secrets(await registry_events(gateway, admin))
    assert SecretBox(new_key).open(sealed[-1]) == source_body()["auth"]["secret"]
    with pytest.raises(SecretBoxError):
        SecretBox(new_key).open(sealed[0])
    await restart_registry(gateway, secret_key=new_key)
    assert (await admin.registry("admin.reseal", {}))["resealed"] == 1


def sealed_secrets(events: list[bytes]) -> list[str]:
    datas = [orjson.loads(event)["data"] for event in events]
    return [d["sealed_secret"] for d in datas if d.get("sealed_secret")]


async def restart_registry(gateway: Gateway, **overrides: Any) -> None:
    """Replace the registry with one started on other settings."""
    old = next(s for s in gateway.services if s.name == "registry")
    await old.stop()
    gateway.services.remove(old)
    service = build_registry(gateway.settings.model_copy(update=overrides))
    await service.start()
    gateway.services.append(service)
