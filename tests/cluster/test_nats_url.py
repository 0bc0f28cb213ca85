"""A NATS_URL naming a cluster's members, with or without a user."""

from __future__ import annotations

import pytest

from shared.bus import redacted, servers_and_credentials
from shared.client import ByomClient
from shared.errors import Unavailable
from tests.processes import free_ports

CLUSTER = "nats://router:s3cret@nats-1:4222, nats://router:s3cret@nats-2:4222"


def test_every_listed_member_is_a_server_and_the_user_goes_to_all() -> None:
    assert servers_and_credentials(CLUSTER) == (
        ["nats://router:s3cret@nats-1:4222", "nats://router:s3cret@nats-2:4222"],
        "router",
        "s3cret",
    )


def test_a_single_url_without_a_user_is_unchanged() -> None:
    assert servers_and_credentials("nats://127.0.0.1:4222") == (
        ["nats://127.0.0.1:4222"],
        None,
        None,
    )


def test_logs_and_errors_never_show_the_password() -> None:
    assert redacted(CLUSTER) == (
        "nats://router:***@nats-1:4222,nats://router:***@nats-2:4222"
    )


async def test_the_client_names_an_unreachable_cluster_without_its_password() -> None:
    (port,) = free_ports(1)
    url = f"nats://app:s3cret@127.0.0.1:{port},nats://app:s3cret@127.0.0.1:{port}"

    with pytest.raises(Unavailable) as refused:
        await ByomClient.connect(url, None)

    assert "s3cret" not in str(refused.value)
    assert f"nats://app:***@127.0.0.1:{port}" in str(refused.value)
