"""Bad tokens get ``unauthenticated`` on every subject a client can call."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator

import jwt
import orjson
import pytest
from nats.aio.msg import Msg

from shared.errors import Unauthenticated
from shared.identity import ADMIN_ROLE, mint_token
from shared.subjects import REGISTRY_OPERATIONS
from shared.transport import AUTHORIZATION, ERROR_HEADER
from tests.harness import AUTH_SECRET, Gateway, gateway_settings


def _b64(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


def _claims(**extra: object) -> dict[str, object]:
    return {
        "sub": "root",
        "roles": [ADMIN_ROLE],
        "exp": int(time.time()) + 600,
        **extra,
    }


BAD_AUTHORIZATION = {
    "forged": "Bearer "
    + mint_token("not-the-gateway-secret-but-long-enough", user="root", admin=True),
    "expired": "Bearer " + mint_token(AUTH_SECRET, user="root", admin=True, ttl_s=-60),
    "alg_none": f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.",
    "no_exp": "Bearer "
    + jwt.encode({"sub": "root", "roles": [ADMIN_ROLE]}, AUTH_SECRET, "HS256"),
    "malformed": "Bearer not.a.jwt",
    "not_bearer": "Basic cm9vdDpyb290",
    "missing": "",
}
CLIENT_SUBJECTS = [
    *(f"registry.{operation}" for operation in REGISTRY_OPERATIONS),
    "registry.admin.reseal",
    "inference.chat",
    "metering.usage",
]


@pytest.fixture(scope="module")
async def whole_gateway(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    running = Gateway(gateway_settings(nats_url, tmp_path_factory.mktemp("data")))
    await running.start()
    yield running
    await running.stop()


def _headers(authorization: str) -> dict[str, str]:
    return {AUTHORIZATION: authorization} if authorization else {}


@pytest.mark.parametrize("kind", BAD_AUTHORIZATION)
async def test_every_request_subject_refuses_a_bad_token(
    whole_gateway: Gateway, kind: str
) -> None:
    client = await whole_gateway.client(token="")
    prefix = whole_gateway.subjects.prefix
    for subject in CLIENT_SUBJECTS:
        reply = await client.nc.request(
            f"{prefix}.{subject}",
            b"{}",
            timeout=5,
            headers=_headers(BAD_AUTHORIZATION[kind]),
        )
        assert reply.headers is not None, subject
        assert reply.headers[ERROR_HEADER] == "unauthenticated", subject
        assert orjson.loads(reply.data)["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("kind", BAD_AUTHORIZATION)
async def test_every_replica_refuses_a_bad_token_on_status(
    whole_gateway: Gateway, kind: str
) -> None:
    client = await whole_gateway.client(token="")
    replies: asyncio.Queue[Msg] = asyncio.Queue()
    inbox = client.nc.new_inbox()
    subscription = await client.nc.subscribe(inbox, cb=replies.put)
    await client.nc.publish(
        whole_gateway.subjects.status,
        b"{}",
        reply=inbox,
        headers=_headers(BAD_AUTHORIZATION[kind]),
    )
    await asyncio.sleep(0.3)
    await subscription.unsubscribe()

    codes = [(msg.headers or {}).get(ERROR_HEADER) for msg in _drain(replies)]
    assert codes == ["unauthenticated"] * len(whole_gateway.services)


def _drain(queue: asyncio.Queue[Msg]) -> list[Msg]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_a_good_token_is_accepted_within_the_clock_skew(
    whole_gateway: Gateway,
) -> None:
    barely_expired = mint_token(AUTH_SECRET, user="root", admin=True, ttl_s=-2)
    client = await whole_gateway.client(token=barely_expired)
    assert await client.registry("access.get", {}) == {"enabled": False, "groups": None}


def _hs256(claims: dict[str, object], key: bytes) -> str:
    """Sign by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    digest = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"{signing_input}.{signature}"


def _key_pair(algorithm: str) -> tuple[object, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    private = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.mark.parametrize("algorithm", ["EdDSA", "RS256"])
async def test_a_public_key_verifies_asymmetric_tokens_only(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory, algorithm: str
) -> None:
    private, public = _key_pair(algorithm)
    settings = gateway_settings(
        nats_url,
        tmp_path_factory.mktemp("data"),
        auth_secret=None,
        auth_public_key=public,
    )
    gateway = Gateway(settings)
    await gateway.start(["registry"])
    try:
        good = jwt.encode(_claims(), private, algorithm=algorithm)  # type: ignore[arg-type]
        client = await gateway.client(token=good)
        assert (await client.registry("access.get", {}))["enabled"] is False
        # The public key used as an HMAC secret must not pass (alg confusion).
        confused = _hs256(_claims(), public.encode())
        forged = await gateway.client(token=confused)
        with pytest.raises(Unauthenticated, match="invalid token"):
            await forged.registry("access.get", {})
    finally:
        await gateway.stop()
