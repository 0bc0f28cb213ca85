"""Run the ``byom`` command against a test gateway, as a user's shell would.

The CLI finds the gateway's subjects by ``BYOM_SUBJECT_PREFIX`` and
``BYOM_STREAM_PREFIX``, and reads no development secrets but the ones given.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from typer.testing import CliRunner, Result

from shared.cli.main import app
from tests.harness import Gateway


async def byom(
    gateway: Gateway,
    *args: str,
    token: str | None = None,
    as_json: bool = True,
    env: dict[str, str | None] | None = None,
) -> Result:
    """Run the CLI in a thread, so this loop keeps serving its requests.

    The caller is an enrollment administrator unless ``token`` says otherwise.
    """
    caller = token if token is not None else gateway.token("root", admin=True)
    argv = ["--nats-url", gateway.settings.nats_url, "--token", caller]
    argv += ["--json"] if as_json else []
    # An empty data directory: no local.env of a `byom up` run leaks in.
    environment = {
        "BYOM_SUBJECT_PREFIX": gateway.settings.subject_prefix,
        "BYOM_STREAM_PREFIX": gateway.settings.stream_prefix,
        "BYOM_DATA_DIR": str(gateway.settings.data_dir),
        **(env or {}),
    }
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, app, [*argv, *args], env=environment)


async def byom_json(gateway: Gateway, *args: str, token: str | None = None) -> Any:
    """Run a verb that must succeed and return its ``--json`` output."""
    result = await byom(gateway, *args, token=token)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)
