"""Metering as its own OS process, to kill it the way a crash would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
from nats.js import JetStreamContext

from shared.client import ByomClient
from shared.contracts.usage import UsageEvent
from shared.errors import Unavailable
from shared.settings import Settings
from shared.subjects import Subjects

READY_TIMEOUT_S = 30.0


class MeteringProcess:
    """``python -m services.metering`` with a gateway's settings."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self._env = {
            **os.environ,
            "NATS_URL": settings.nats_url,
            "BYOM_DATA_DIR": str(settings.data_dir),
            "BYOM_AUTH_SECRET": settings.auth_secret or "",
            "BYOM_SUBJECT_PREFIX": settings.subject_prefix,
            "BYOM_STREAM_PREFIX": settings.stream_prefix,
            "BYOM_LOG_LEVEL": "WARNING",
        }
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.metering"],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )

    def kill(self) -> None:
        """SIGKILL: no clean-up, no drain, whatever was in flight."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


async def wait_until_answering(client: ByomClient) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    while True:
        try:
            await client.request(client.subjects.metering_usage, {}, timeout=1.0)
        except Unavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            return


async def stored_requests(client: ByomClient) -> int:
    rows = (await client.usage({}))["rows"]
    return sum(row["requests"] for row in rows)


async def publish_events(
    js: JetStreamContext,
    subjects: Subjects,
    events: list[UsageEvent],
    *,
    msg_id: bool = True,
    chunk: int = 200,
) -> None:
    """Publish events to BYOM_USAGE the way the router does, in chunks."""
    for start in range(0, len(events), chunk):
        await asyncio.gather(
            *(
                _publish(js, subjects, event, msg_id=msg_id)
                for event in events[start : start + chunk]
            )
        )


async def _publish(
    js: JetStreamContext, subjects: Subjects, event: UsageEvent, *, msg_id: bool
) -> None:
    headers = {"Nats-Msg-Id": event.request_id} if msg_id else None
    await js.publish(
        subjects.usage(event.model),
        orjson.dumps(event.model_dump(exclude_none=True)),
        stream=subjects.usage_stream,
        headers=headers,
    )
