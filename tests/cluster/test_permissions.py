"""Subject permissions of deploy/nats/accounts.conf, on the running cluster.

The deployment of these tests runs every service under its own NATS user, so
every test of this package also shows that the services need nothing beyond
their permissions; one test here reads the nodes' logs to be sure no
service was ever refused a subject.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from nats.aio.client import Client as NatsClient
from typer.testing import CliRunner

from shared.cli.main import app as cli
from shared.client import ByomClient
from shared.errors import Unavailable
from shared.identity import mint_token
from tests.cluster.gateway import APP_INBOX, AUTH_SECRET, ClusterGateway, connect
from tests.cluster.load import wait_until_served

FORGED_EVENT = "byom.events.registry.forged"


@dataclass
class Credential:
    """A raw connection as one NATS user, and the errors the server sent it."""

    nc: NatsClient
    errors: list[str]

    async def refused(self, subject: str, kind: str = "publish") -> bool:
        """Tell whether the server refused ``subject`` (publish or subscription)."""
        await self.nc.flush(timeout=2)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            # nats-py reports the server's error in lower case.
            wanted = f'violation for {kind} to "{subject.lower()}"'
            if any(wanted in error for error in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False

    def client(self, user: str, *, admin: bool = False) -> ByomClient:
        token = mint_token(AUTH_SECRET, user=user, admin=admin, ttl_s=600)
        return ByomClient(self.nc, token)


@pytest.fixture
async def app(deployment: ClusterGateway) -> AsyncIterator[Credential]:
    """The credential every application and user tool connects with."""
    errors: list[str] = []
    url = deployment.nats.url("app")
    nc = await connect(url, inbox_prefix=APP_INBOX, errors=errors)
    yield Credential(nc, errors)
    await nc.close()


async def test_a_client_credential_cannot_send_a_registry_command(
    deployment: ClusterGateway, app: Credential
) -> None:
    """Even with an administrator's token, the app user reaches no registry."""
    as_admin = app.client("root", admin=True)
    name = f"forbidden-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "base_url": "http://127.0.0.1:9", "auth": {"type": "none"}}

    with pytest.raises(Unavailable):
        await as_admin.request("byom.registry.source.create", body, timeout=1.0)

    assert await app.refused("byom.registry.source.create")
    admin = await deployment.admin()
    sources = (await admin.registry("source.list", {}))["sources"]
    assert name not in {source["name"] for source in sources}


@pytest.mark.parametrize(
    "subject",
    [
        "byom.usage.>",  # every user's usage events
        "_INBOX.>",  # replies sent to every other credential
        "byom.metering.usage",  # posing as metering to read queries
        "byom.inference.*",  # posing as a router to read prompts
    ],
)
async def test_a_client_credential_cannot_listen_to_what_is_not_its_own(
    app: Credential, subject: str
) -> None:
    await app.nc.subscribe(subject)

    assert await app.refused(subject, "subscription")


async def test_a_client_credential_cannot_read_the_usage_stream(
    app: Credential,
) -> None:
    """Creating a consumer on BYOM_USAGE is refused: no raw events either."""
    subject = "$JS.API.CONSUMER.CREATE.BYOM_USAGE"

    with pytest.raises(Unavailable):
        await app.client("alice").request(subject, {}, timeout=1.0)

    assert await app.refused(subject)


async def test_a_user_reads_only_their_own_usage(
    deployment: ClusterGateway, app: Credential
) -> None:
    """Through the app credential, a user asking for another's usage sees theirs."""
    model = await deployment.register_model(
        {"enrollment": {"rpm": 100_000}, "user": {"rpm": 100_000}}
    )
    alice, bob = app.client("alice-p"), app.client("bob-p")
    for user in (alice, bob):
        await wait_until_served(user, model, timeout=10)

    await deployment.wait_until_metered()
    rows = (await alice.usage({"group_by": ["user"], "filters": {"user": "bob-p"}}))[
        "rows"
    ]

    assert [row["user"] for row in rows] == ["alice-p"]


async def test_a_service_credential_cannot_act_as_another_service(
    deployment: ClusterGateway,
) -> None:
    """The router's user can neither forge registry events nor edit the registry."""
    errors: list[str] = []
    nc = await connect(deployment.nats.url("router"), errors=errors)
    router = Credential(nc, errors)
    try:
        await nc.publish(FORGED_EVENT, b"{}")
        await nc.publish("byom.registry.model.disable", b"{}")

        assert await router.refused(FORGED_EVENT)
        assert await router.refused("byom.registry.model.disable")
    finally:
        await nc.close()


def test_no_service_was_refused_a_subject(deployment: ClusterGateway) -> None:
    """Every service ran this package's load under its own user, unrefused."""
    refused = [
        line
        for line in deployment.nats.violations()
        if any(f'User "{name}"' in line for name in deployment.replicas)
        and FORGED_EVENT not in line
        and "byom.registry.model.disable" not in line
    ]

    assert refused == []


async def test_a_streamed_chat_reaches_the_client_on_its_own_inbox(
    deployment: ClusterGateway, app: Credential
) -> None:
    """Chunks go to ``_INBOX.app.…``, the only inbox the app user may read."""
    model = await deployment.register_model(
        {"enrollment": {"rpm": 100_000}, "user": {"rpm": 100_000}}
    )
    user = app.client("carol-p")
    await wait_until_served(user, model, timeout=10)
    request = {"model": model, "messages": [{"role": "user", "content": "hi"}]}

    chunks = [
        chunk
        async for chunk in user.chat_stream(
            request, application="workshop", project="p"
        )
    ]

    assert chunks[-1]["usage"]["completion_tokens"] == 8
    assert app.errors == []


async def test_the_cli_works_as_the_app_user_with_its_inbox_prefix(
    deployment: ClusterGateway,
) -> None:
    """``byom chat`` on the cluster's URL list, as a NATS user held to its own
    inbox: ``--inbox-prefix`` puts the replies where it may read them."""
    model = await deployment.register_model(
        {"enrollment": {"rpm": 100_000}, "user": {"rpm": 100_000}}
    )
    await wait_until_served(await deployment.client("dave-p"), model, timeout=10)
    token = mint_token(AUTH_SECRET, user="dave-p", ttl_s=600)
    argv = ["--nats-url", deployment.nats.url("app"), "--token", token, "--json"]
    argv += ["--inbox-prefix", APP_INBOX, "chat", model, "hello"]
    # An empty data directory: no local.env of a `byom up` run leaks in.
    env = {"BYOM_DATA_DIR": str(deployment.root / "cli"), "BYOM_SUBJECT_PREFIX": ""}

    result = await asyncio.to_thread(CliRunner().invoke, cli, argv, env=env)

    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["usage"]["completion_tokens"] == 8
