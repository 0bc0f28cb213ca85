"""``byom up``: run the whole gateway on this machine, in the foreground.

It uses the NATS server at ``NATS_URL`` when one answers, or starts a private
``nats-server`` with JetStream under the data directory. It generates
development secrets once (``<data dir>/local.env``) when none are set, starts
the four services as child processes with their log lines tagged, and stops
everything on Ctrl-C, or when any service dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import typer

from shared.cli.context import LOCAL_ENV, console, data_dir, errors
from shared.secrets import SecretBox

SERVICES = ("registry", "limiter", "metering", "router")
COLOURS = {"registry": "cyan", "limiter": "magenta", "metering": "green",
           "router": "yellow", "nats": "blue"}  # fmt: skip
READY_TIMEOUT_S = 30.0


def up(
    nats_url: str = typer.Option(
        "nats://127.0.0.1:4222", envvar="NATS_URL", help="NATS server to use."
    ),
) -> None:
    """Start NATS (when needed) and the four services until Ctrl-C."""
    directory = data_dir()
    env = {**os.environ, **_development_secrets(directory), "NATS_URL": nats_url}
    env.setdefault("BYOM_DATA_DIR", str(directory))
    try:
        code = asyncio.run(_run(nats_url, directory, env))
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _development_secrets(directory: Path) -> dict[str, str]:
    """Return BYOM_AUTH_SECRET and BYOM_SECRET_KEY, generating them once."""
    path = directory / LOCAL_ENV
    saved: dict[str, str] = {}
    if path.exists():
        lines = path.read_text().splitlines()
        saved = dict(line.split("=", 1) for line in lines if "=" in line)
    wanted = {
        "BYOM_AUTH_SECRET": SecretBox.generate_key,
        "BYOM_SECRET_KEY": SecretBox.generate_key,
    }
    missing = {
        name: make()
        for name, make in wanted.items()
        if not os.environ.get(name) and name not in saved
    }
    if missing:
        directory.mkdir(parents=True, exist_ok=True)
        saved.update(missing)
        path.write_text("".join(f"{k}={v}\n" for k, v in saved.items()))
        path.chmod(0o600)
        console.print(
            f"[dim]generated development secrets in {path} "
            "(set BYOM_AUTH_SECRET and BYOM_SECRET_KEY for a real deployment)[/dim]"
        )
    return {k: v for k, v in saved.items() if not os.environ.get(k)}


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 4222), 1
        ):
            return True
    except OSError:
        return False


async def _run(nats_url: str, directory: Path, env: dict[str, str]) -> int:
    children: dict[str, asyncio.subprocess.Process] = {}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not _answers(nats_url):
            children["nats"] = await _start_nats(nats_url, directory)
        ready = {name: asyncio.Event() for name in SERVICES}
        for name in SERVICES:
            children[name] = await _spawn(
                name, [sys.executable, "-m", f"services.{name}"], env, ready[name]
            )
        return await _supervise(children, ready, stop, nats_url)
    finally:
        await _stop_all(children)


async def _start_nats(url: str, directory: Path) -> asyncio.subprocess.Process:
    binary = shutil.which("nats-server") or shutil.which(
        "nats-server", path="/usr/sbin:/usr/local/sbin:/usr/local/bin"
    )
    if binary is None:
        errors.print(
            f"[red]error[/red]: no NATS server answers at {url} and nats-server is "
            "not installed. Install it (apt-get install nats-server) or set "
            "NATS_URL to a server with JetStream."
        )
        raise typer.Exit(1)
    parts = urlsplit(url)
    store = directory / "nats"
    store.mkdir(parents=True, exist_ok=True)
    args = [binary, "-a", parts.hostname or "127.0.0.1", "-p", str(parts.port or 4222),
            "-js", "-sd", str(store)]  # fmt: skip
    process = await _spawn("nats", args, dict(os.environ), None)
    deadline = time.monotonic() + 10
    while not _answers(url):
        if process.returncode is not None or time.monotonic() > deadline:
            errors.print(f"[red]error[/red]: nats-server did not start at {url}")
            raise typer.Exit(1)
        await asyncio.sleep(0.05)
    console.print(
        f"[blue]nats[/blue] started a private server at {url}, data in {store}"
    )
    return process


async def _spawn(
    name: str, args: list[str], env: dict[str, str], ready: asyncio.Event | None
) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    asyncio.create_task(_relay_logs(name, process, ready))  # noqa: RUF006
    return process


async def _relay_logs(
    name: str, process: asyncio.subprocess.Process, ready: asyncio.Event | None
) -> None:
    assert process.stdout is not None
    colour = COLOURS.get(name, "white")
    async for raw in process.stdout:
        line = raw.decode(errors="replace").rstrip()
        console.print(
            f"[{colour}]{name:>8}[/{colour}] {line}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
        if ready is not None and '"service_started"' in line:
            with contextlib.suppress(ValueError):
                if orjson.loads(line).get("event") == "service_started":
                    ready.set()


async def _supervise(
    children: dict[str, asyncio.subprocess.Process],
    ready: dict[str, asyncio.Event],
    stop: asyncio.Event,
    nats_url: str,
) -> int:
    waits: dict[asyncio.Task[Any], str] = {
        asyncio.create_task(process.wait()): name for name, process in children.items()
    }
    stopping = asyncio.create_task(stop.wait())
    all_ready = asyncio.create_task(
        asyncio.wait_for(
            asyncio.gather(*(event.wait() for event in ready.values())), READY_TIMEOUT_S
        )
    )
    pending: set[asyncio.Task[Any]] = {stopping, all_ready, *waits}
    while True:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if stopping in done:
            console.print("[bold]stopping the gateway[/bold]")
            return 0
        if all_ready in done:
            if all_ready.exception() is not None:
                errors.print("[red]error[/red]: the services did not all start in time")
                return 1
            console.print(
                f"[bold green]gateway ready[/bold green] on {nats_url}: "
                "try 'byom status' in another terminal; Ctrl-C stops it"
            )
        for task in done & set(waits):
            errors.print(
                f"[red]error[/red]: {waits[task]} exited with code {task.result()}"
            )
            return 1


async def _stop_all(children: dict[str, asyncio.subprocess.Process]) -> None:
    """Stop the router first (it drains usage events), NATS last."""
    services = [name for name in reversed(children) if name != "nats"]
    for name in [*services, *(["nats"] if "nats" in children else [])]:
        process = children[name]
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
