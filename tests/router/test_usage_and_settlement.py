"""One usage event per request whatever its outcome; quota settles to usage."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

from shared.errors import ByomError, RateLimited
from tests.fakes.server import FakeServer
from tests.harness import Gateway
from tests.router.kits import Kit
from tests.router.scene import (
    APP,
    GENEROUS,
    MODEL,
    Scene,
    ask,
    by_request,
    enroll,
    new_request_id,
)

PICTURE = {
    "model": MODEL,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
            ],
        }
    ],
}


async def _register_more(scene: Scene, name: str, limits: dict[str, Any]) -> str:
    fields = {**scene.model, "name": name, "limits": limits}
    kept = ("source", "name", "provider", "provider_model", "endpoints", "limits")
    model = await scene.admin.registry(
        "model.register", {key: fields[key] for key in kept}
    )
    return str(model["rid"])


async def _outcome(call: Awaitable[Any]) -> str:
    try:
        await call
    except ByomError as exc:
        return exc.code
    return "ok"


async def _leave_stream_early(scene: Scene, request_id: str) -> str:
    stream = scene.user.chat_stream(ask(stream=True), **APP, request_id=request_id)
    async for _ in stream:
        break
    await stream.aclose()
    await scene.provider.wait_disconnect(timeout_s=3.0)
    return "client_gone"


async def test_every_request_gives_exactly_one_usage_event_whatever_its_outcome(
    gateway: Gateway, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """Ok, failed, refused and abandoned calls are each recorded once."""
    scene = await enroll(gateway, openai_kit, openai_provider)
    await _register_more(
        scene, "tight", {"enrollment": {"rpm": 1}, "user": {"rpm": 100}}
    )
    disabled = await _register_more(scene, "off", GENEROUS)
    await scene.admin.registry("model.disable", {"rid": disabled})
    kit, user = openai_kit, scene.user
    openai_provider.queue(
        kit.text("fine"),
        *[kit.error(500, "down", {})] * 2,
        kit.text("tight ok"),
        kit.stream(["word "] * 50, True, 0.1),
    )
    ids = {
        outcome: new_request_id()
        for outcome in (
            "ok", "provider_error", "tight_ok", "rate_limited", "capability",
            "model_disabled", "not_found", "invalid_request", "client_gone",
        )
    }  # fmt: skip

    def chat(key: str, request: dict[str, Any]) -> Awaitable[Any]:
        return user.chat(request, **APP, request_id=ids[key])

    seen = {
        "ok": await _outcome(chat("ok", ask())),
        "provider_error": await _outcome(chat("provider_error", ask())),
        "tight_ok": await _outcome(chat("tight_ok", {**ask(), "model": "tight"})),
        "rate_limited": await _outcome(
            chat("rate_limited", {**ask(), "model": "tight"})
        ),
        "capability": await _outcome(chat("capability", PICTURE)),
        "model_disabled": await _outcome(
            chat("model_disabled", {**ask(), "model": "off"})
        ),
        "not_found": await _outcome(chat("not_found", {**ask(), "model": "nope"})),
        "invalid_request": await _outcome(
            chat("invalid_request", {"model": MODEL, "messages": []})
        ),
        "client_gone": await _leave_stream_early(scene, ids["client_gone"]),
    }
    events = await scene.usage_events(len(ids))

    assert by_request(events) == dict.fromkeys(ids.values(), 1)
    recorded = {
        key: (event["status"], event.get("error_code"))
        for key, request_id in ids.items()
        for event in events
        if event["request_id"] == request_id
    }
    assert recorded == {
        "ok": ("ok", None),
        "provider_error": ("error", "provider_error"),
        "tight_ok": ("ok", None),
        "rate_limited": ("rate_limited", "rate_limited"),
        "capability": ("error", "capability_unsupported"),
        "model_disabled": ("error", "model_disabled"),
        "not_found": ("error", "not_found"),
        "invalid_request": ("error", "invalid_request"),
        "client_gone": ("error", "client_gone"),
    }
    assert seen["rate_limited"] == "rate_limited"


TPM_LIMITS = {"enrollment": {"rpm": 100, "tpm": 5000}, "user": {"rpm": 100}}
"""Projects get 70 %: 3500 tokens, room for one 2500-token reservation."""
LARGE = ask(max_completion_tokens=2500)


async def test_quota_keeps_the_real_usage_not_the_reservation(
    gateway: Gateway, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """After a 20-token call, another large reservation still fits."""
    scene = await enroll(gateway, openai_kit, openai_provider, limits=TPM_LIMITS)
    openai_provider.queue(openai_kit.text("short"), openai_kit.text("short"))

    await scene.chat(LARGE)
    second = await scene.chat(LARGE)

    assert second["usage"]["total_tokens"] == 20


async def test_a_failed_call_is_refunded(
    gateway: Gateway, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """A provider error leaves the tpm window as it was."""
    scene = await enroll(gateway, openai_kit, openai_provider, limits=TPM_LIMITS)
    openai_provider.queue(*[openai_kit.error(500, "down", {})] * 2)
    openai_provider.queue(openai_kit.text("back"))

    assert await _outcome(scene.chat(LARGE)) == "provider_error"
    reply = await scene.chat(LARGE)

    assert reply["choices"][0]["message"]["content"] == "back"


async def test_two_large_reservations_do_not_fit_at_once(
    gateway: Gateway, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """The settlement test's limits really bind while a call is in flight."""
    scene = await enroll(gateway, openai_kit, openai_provider, limits=TPM_LIMITS)
    openai_provider.queue(openai_kit.stream(["word "] * 10, True, 0.1))
    stream = scene.user.chat_stream(LARGE | {"stream": True}, **APP)

    async for _ in stream:
        with pytest.raises(RateLimited) as caught:
            await scene.user.chat(LARGE, **APP)
        break
    await stream.aclose()

    assert caught.value.extra["limit"] == "tpm"
