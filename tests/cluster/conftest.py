"""One deployment on a three-node cluster, shared by the cluster tests.

Starting three nodes and six service processes takes seconds; every test
of this package uses the same deployment and its own models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.gateway import ClusterGateway
from tests.cluster.nodes import NatsCluster

REPLICAS = {"registry": 1, "metering": 2, "limiter": 2, "router": 2}


@pytest.fixture(scope="package")
def cluster_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="package")
async def deployment(cluster_root: Path) -> AsyncIterator[ClusterGateway]:
    """Three NATS nodes with the deploy config, and replicas of every service."""
    nodes = NatsCluster(cluster_root)
    nodes.start()
    gateway = ClusterGateway(cluster_root, nodes)
    try:
        await nodes.wait_for_jetstream()
        await gateway.start(REPLICAS)
        yield gateway
    finally:
        await gateway.stop()
        nodes.stop()
