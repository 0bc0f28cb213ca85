"""The ``byom`` registry verbs against a running gateway, tables and JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.cli import byom, byom_json
from tests.harness import Gateway, gateway_settings
from tests.registry.conftest import SECRET


@pytest.fixture
async def byom_gateway(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """A registry on its own subjects; the CLI finds them by BYOM_SUBJECT_PREFIX."""
    running = Gateway(gateway_settings(nats_url, tmp_path_factory.mktemp("data")))
    await running.start(["registry"])
    yield running
    await running.stop()


async def test_every_registry_verb_works_from_the_cli(byom_gateway: Gateway) -> None:
    gw = byom_gateway
    source = await byom_json(
        gw, "source", "create", "cli-src", "--base-url", "https://api.example.com",
        "--auth", "bearer", "--secret", SECRET,
    )  # fmt: skip
    assert source["auth"] == {"type": "bearer"}
    assert (await byom_json(gw, "source", "update", "cli-src", "--port", "8443"))[
        "port"
    ] == 8443
    shared = await byom_json(gw, "source", "share", "cli-src", "group:ml", "editor")
    assert shared["roles"]["group:ml"] == "editor"

    model = await byom_json(
        gw, "model", "register", "cli-model", "--source", "cli-src",
        "--provider-model", "gpt-4o-mini", "--capability", "streaming",
        "--rpm", "100", "--user-rpm", "10",
    )  # fmt: skip
    assert model["enabled"] is True
    updated = await byom_json(
        gw, "model", "update", "cli-model", "--rpm", "50", "--user-tpm", "500"
    )
    assert updated["limits"]["enrollment"]["rpm"] == 50
    assert (await byom_json(gw, "model", "disable", "cli-model"))["enabled"] is False
    assert (await byom_json(gw, "model", "enable", "cli-model"))["enabled"] is True

    limits = await byom_json(
        gw, "limits", "set", "cli-model", "proj", "--percent", "10"
    )
    assert (limits["basis"], limits["rpm"]) == ("percent", 5)
    assert await byom_json(gw, "limits", "get", "cli-model", "proj") == limits

    await byom_json(gw, "access", "set", "--enable")
    listed = await byom_json(gw, "selector", "workshop")
    assert [m["name"] for m in listed["models"]] == ["cli-model"]
    assert (await byom_json(gw, "admin", "reseal"))["resealed"] == 1

    assert await byom_json(gw, "model", "delete", "cli-model") == {}
    assert await byom_json(gw, "source", "delete", "cli-src") == {}


async def test_tables_and_errors_read_well(byom_gateway: Gateway) -> None:
    gw = byom_gateway
    await byom_json(gw, "source", "create", "tbl-src", "--base-url", "http://h:1")

    table = await byom(gw, "source", "list", as_json=False)
    refused = await byom(
        gw, "source", "share", "tbl-src", "bob", "owner", as_json=False
    )

    assert table.exit_code == 0
    assert "tbl-src" in table.stdout
    assert "base_url" in table.stdout
    assert refused.exit_code == 1
    assert "invalid_request" in refused.output
    assert "'field': 'principal'" in refused.output


async def test_a_model_without_a_limit_level_names_the_missing_options(
    byom_gateway: Gateway,
) -> None:
    gw = byom_gateway
    await byom_json(gw, "source", "create", "lim-src", "--base-url", "http://h:1")
    register = ("model", "register", "lim-model", "--source", "lim-src")

    no_user = await byom(gw, *register, "--provider-model", "m", "--rpm", "5")
    no_enrollment = await byom(
        gw, *register, "--provider-model", "m", "--user-rpm", "5"
    )

    assert no_user.exit_code == 2
    assert "give --user-rpm or --user-tpm" in no_user.output
    assert no_enrollment.exit_code == 2
    assert "give --rpm or --tpm" in no_enrollment.output
    models = (await byom_json(gw, "model", "list"))["models"]
    assert "lim-model" not in [model["name"] for model in models]
