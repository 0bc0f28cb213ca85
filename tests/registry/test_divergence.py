"""A registry never publishes over a stream written by another database."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.registry.publisher import RegistryDiverged
from tests.harness import Gateway


async def test_a_registry_with_a_lost_database_refuses_to_start(
    gateway: Gateway, tmp_path: Path
) -> None:
    admin = await gateway.client("root", admin=True)
    await admin.registry("access.set", {"enabled": True, "groups": None})

    fresh = Gateway(gateway.settings.model_copy(update={"data_dir": tmp_path / "new"}))
    with pytest.raises(RegistryDiverged, match="version 1 but this registry's"):
        await fresh.start(["registry"])
    await fresh.stop()
