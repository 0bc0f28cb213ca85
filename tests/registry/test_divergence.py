"""A registry behind the stream catches up from it; another history is refused.

Every registry event carries the whole new state of its object, so a
registry whose database was lost rebuilds it from ``BYOM_REGISTRY`` before
it serves, and answers as the lost one did. A database with a history the
stream does not have is never published over.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.registry.restore import RegistryDiverged
from tests.harness import Gateway
from tests.registry.conftest import model_body, source_body


async def test_a_registry_with_a_lost_database_rebuilds_it_from_the_stream(
    gateway: Gateway, tmp_path: Path
) -> None:
    admin = await gateway.client("root", admin=True)
    model = await registered_model(admin)
    await admin.registry("model.disable", {"rid": model["rid"]})
    await admin.registry("access.set", {"enabled": True, "groups": ["ml"]})
    await admin.registry(
        "project_limits.set", {"model": model["rid"], "project": "p", "percent": 20}
    )
    before = await registry_state(admin, model["rid"])
    await gateway.stop_service("registry")

    await gateway.start_service(
        "registry", gateway.settings.model_copy(update={"data_dir": tmp_path / "new"})
    )
    after = await registry_state(admin, model["rid"])
    resealed = await admin.registry("admin.reseal", {})

    assert after == before
    assert resealed["resealed"] == 1
    assert (await admin.registry("model.list", {}))["models"][0]["enabled"] is False


async def test_a_registry_restored_from_an_older_backup_catches_up(
    gateway: Gateway, tmp_path: Path
) -> None:
    admin = await gateway.client("root", admin=True)
    model = await registered_model(admin)
    await gateway.stop_service("registry")
    backup = tmp_path / "backup"
    backup.mkdir()
    shutil.copy(gateway.settings.data_dir / "registry.sqlite3", backup)
    await gateway.start_service("registry")
    await admin.registry("model.disable", {"rid": model["rid"]})
    await admin.registry("access.set", {"enabled": True, "groups": None})
    before = await registry_state(admin, model["rid"])
    await gateway.stop_service("registry")

    restored = gateway.settings.model_copy(update={"data_dir": backup})
    await gateway.start_service("registry", restored)

    assert await registry_state(admin, model["rid"]) == before


async def registered_model(admin: Any) -> dict[str, Any]:
    source = await admin.registry("source.create", source_body())
    return dict(await admin.registry("model.register", model_body(source["rid"])))


async def registry_state(admin: Any, model: str) -> dict[str, Any]:
    return {
        "sources": await admin.registry("source.list", {}),
        "models": await admin.registry("model.list", {}),
        "access": await admin.registry("access.get", {}),
        "limits": await admin.registry(
            "project_limits.get", {"model": model, "project": "p"}
        ),
    }


async def test_a_database_with_another_history_is_refused(
    gateway: Gateway, nats_url: str, tmp_path: Path
) -> None:
    admin = await gateway.client("root", admin=True)
    await admin.registry("access.set", {"enabled": True, "groups": None})
    await admin.registry("access.set", {"enabled": True, "groups": ["ml"]})
    run = uuid.uuid4().hex[:10]
    other = Gateway(
        gateway.settings.model_copy(
            update={"subject_prefix": f"t{run}", "stream_prefix": f"T{run}_",
                    "data_dir": tmp_path / "other"}
        )
    )  # fmt: skip
    await other.start(["registry"])
    other_admin = await other.client("root", admin=True)
    await other_admin.registry("access.set", {"enabled": False, "groups": None})
    await other.stop()

    mixed = Gateway(
        gateway.settings.model_copy(update={"data_dir": tmp_path / "other"})
    )
    with pytest.raises(RegistryDiverged, match="version 1 in this database differs"):
        await mixed.start(["registry"])
    await mixed.stop()
