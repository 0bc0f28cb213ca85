"""Every bad registration body is refused with the dotted path of its field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.client import ByomClient
from shared.errors import InvalidRequest
from shared.transport import AUTHORIZATION, ERROR_HEADER
from tests.harness import Gateway
from tests.registry.conftest import SECRET, create_source, model_body, source_body

GSA_KEY = '{"private_key": "-----BEGIN PRIVATE KEY-----"}'

SOURCE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"base_url": "ftp://example.com"}, "base_url"),
    ({"base_url": "https://"}, "base_url"),
    ({"base_url": "https://example.com/?q=1"}, "base_url"),
    ({"base_url": 42}, "base_url"),
    ({"port": 0}, "port"),
    ({"port": 65536}, "port"),
    ({"port": "https"}, "port"),
    ({"name": " "}, "name"),
    ({"name": "has space"}, "name"),
    ({"auth": {"type": "kerberos"}}, "auth.type"),
    ({"auth": {}}, "auth.type"),
    ({"auth": {"type": "api_key"}}, "auth.secret"),
    (
        {"auth": {"type": "api_key", "secret": "s", "header": "bad header"}},
        "auth.header",
    ),
    ({"auth": {"type": "bearer", "secret": ""}}, "auth.secret"),
    ({"auth": {"type": "bearer", "secret": "s", "scope": "x"}}, "auth.scope"),
    (
        {
            "auth": {
                "type": "aws_sigv4",
                "region": "moon",
                "access_key_id": "a",
                "secret": "s",
            }
        },
        "auth.region",
    ),
    (
        {"auth": {"type": "aws_sigv4", "region": "us-east-1", "secret": "s"}},
        "auth.access_key_id",
    ),
    ({"auth": {"type": "google_service_account", "secret": SECRET}}, "auth.secret"),
    ({"roles": {"bob": "owner"}}, "roles.bob"),
    ({"roles": {"user:bob": "admin"}}, "roles.user:bob"),
    ({"exports_enabled": "maybe"}, "exports_enabled"),
    ({"colour": "blue"}, "colour"),
]


@pytest.fixture
async def admin(shared_gateway: Gateway) -> ByomClient:
    return await shared_gateway.client("root", admin=True)


@pytest.mark.parametrize(("fields", "field"), SOURCE_CASES)
async def test_a_bad_source_names_its_field(
    admin: ByomClient, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("source.create", source_body(**fields))
    assert caught.value.field == field
    assert SECRET not in caught.value.message


async def test_every_auth_type_is_accepted(admin: ByomClient) -> None:
    for auth in (
        {"type": "none"},
        {"type": "api_key", "header": "api-key", "secret": "s"},
        {"type": "bearer", "secret": "s"},
        {
            "type": "aws_sigv4",
            "region": "eu-west-1",
            "access_key_id": "A",
            "secret": "s",
        },
        {"type": "google_service_account", "secret": GSA_KEY},
    ):
        source = await create_source(admin, auth=auth)
        assert "secret" not in source["auth"]


def _endpoint(**fields: Any) -> list[dict[str, Any]]:
    return [{"api": "openai_chat", "path": "/v1/chat/completions", **fields}]


MODEL_CASES: list[tuple[dict[str, Any], str]] = [
    ({"provider": "openia"}, "provider"),
    ({"provider_model": ""}, "provider_model"),
    ({"endpoints": []}, "endpoints"),
    ({"endpoints": _endpoint(api="openai_responses")}, "endpoints.0.api"),
    ({"endpoints": _endpoint(path="v1/chat")}, "endpoints.0.path"),
    ({"endpoints": _endpoint(path="/v1/chat?x=1")}, "endpoints.0.path"),
    (
        {"endpoints": _endpoint(capabilities=["streaming", "telepathy"])},
        "endpoints.0.capabilities.1",
    ),
    ({"endpoints": _endpoint(weight=1)}, "endpoints.0.weight"),
    ({"limits": {"enrollment": {"rpm": 1}}}, "limits.user"),
    ({"limits": {"enrollment": {}, "user": {"rpm": 1}}}, "limits.enrollment"),
    (
        {"limits": {"enrollment": {"rpm": 0}, "user": {"rpm": 1}}},
        "limits.enrollment.rpm",
    ),
    ({"limits": {"enrollment": {"rpm": 1}, "user": {"tpm": -5}}}, "limits.user.tpm"),
    (
        {"limits": {"enrollment": {"rpm": 1.5}, "user": {"rpm": 1}}},
        "limits.enrollment.rpm",
    ),
    (
        {"limits": {"enrollment": {"rpm": 1, "rph": 1}, "user": {"rpm": 1}}},
        "limits.enrollment.rph",
    ),
    ({"context_window": 0}, "context_window"),
    ({"max_output_tokens": "many"}, "max_output_tokens"),
    ({"source": 7}, "source"),
    ({"temperature": 0.2}, "temperature"),
]


@pytest.mark.parametrize(("fields", "field"), MODEL_CASES)
async def test_a_bad_model_names_its_field(
    admin: ByomClient, fields: dict[str, Any], field: str
) -> None:
    body = {**model_body("ri.byom.source.x"), **fields}
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("model.register", body)
    assert caught.value.field == field


@pytest.mark.parametrize(
    "missing", ["source", "name", "provider", "provider_model", "endpoints", "limits"]
)
async def test_a_model_missing_a_field_names_it(
    admin: ByomClient, missing: str
) -> None:
    body = model_body("ri.byom.source.x")
    del body[missing]
    with pytest.raises(InvalidRequest) as caught:
        await admin.registry("model.register", body)
    assert caught.value.field == missing


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"'])
async def test_a_body_that_is_not_a_json_object_is_invalid(
    shared_gateway: Gateway, admin: ByomClient, payload: bytes
) -> None:
    for operation in ("source.create", "model.register", "selector"):
        reply = await admin.nc.request(
            shared_gateway.subjects.registry(operation),
            payload,
            timeout=5,
            headers={AUTHORIZATION: f"Bearer {admin.token}"},
        )
        assert reply.headers is not None
        assert reply.headers[ERROR_HEADER] == "invalid_request"
        assert orjson.loads(reply.data)["error"]["field"] == ""
