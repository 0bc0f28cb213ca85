"""A change the event stream did not take is never stuck in the outbox.

While the stream refuses new messages (here: full, with discard-new; in
production: no leader during a node's failover), the change is saved, the
caller is told it is not yet published, and the registry keeps sending the
event until the stream has it, without any further change.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy

from shared.contracts.events import RegistryEvent
from shared.errors import Unavailable
from tests.harness import Gateway

PUBLISHED_WITHIN_S = 3.0


async def last_event_version(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    last = await js.get_msg(stream, info.state.last_seq)
    return RegistryEvent.model_validate_json(last.data or b"{}").version


async def refuse_new_messages(js: JetStreamContext, stream: str) -> None:
    config = (await js.stream_info(stream)).config
    config.max_msgs = (await js.stream_info(stream)).state.messages
    config.discard = DiscardPolicy.NEW
    await js.update_stream(config)


async def accept_messages_again(js: JetStreamContext, stream: str) -> None:
    config = (await js.stream_info(stream)).config
    config.max_msgs = -1
    config.discard = DiscardPolicy.OLD
    await js.update_stream(config)


async def test_a_change_the_stream_refused_is_published_once_it_accepts(
    gateway: Gateway,
) -> None:
    admin = await gateway.client("root", admin=True)
    js = admin.nc.jetstream()
    stream = gateway.subjects.registry_stream
    await admin.registry("access.set", {"enabled": True, "groups": None})
    await refuse_new_messages(js, stream)

    with pytest.raises(Unavailable, match="saved as registry version 2"):
        await admin.registry("access.set", {"enabled": True, "groups": ["ml"]})
    assert await last_event_version(js, stream) == 1

    await accept_messages_again(js, stream)
    deadline = time.monotonic() + PUBLISHED_WITHIN_S
    while await last_event_version(js, stream) < 2:
        assert time.monotonic() < deadline, "the saved change was never published"
        await asyncio.sleep(0.05)
    assert (await admin.registry("access.get", {}))["groups"] == ["ml"]
