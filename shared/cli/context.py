"""What every CLI verb needs: where NATS is, who the caller is, how to print.

Settings come from the environment and, for a gateway started by ``byom
up`` on this machine, from ``<data dir>/local.env``: the development secrets
that ``byom up`` generated, so ``byom token`` signs with the same key.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from shared.client import ByomClient
from shared.errors import ByomError
from shared.identity import mint_token
from shared.subjects import Subjects

LOCAL_ENV = "local.env"
T = TypeVar("T")

# Piped output is not cut to 80 columns: tables stay readable in logs.
console = Console(width=None if sys.stdout.isatty() else 160)
# An error stays one line, so a log of stderr can be searched for it.
errors = Console(stderr=True, soft_wrap=True)


def data_dir() -> Path:
    return Path(os.environ.get("BYOM_DATA_DIR", ".byom"))


def local_env() -> dict[str, str]:
    """Read the development settings ``byom up`` wrote, if any."""
    path = data_dir() / LOCAL_ENV
    if not path.exists():
        return {}
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if "=" in line
    )
    return {key.strip(): value.strip() for key, value in pairs}


def setting(name: str, default: str | None = None) -> str | None:
    """An environment variable, else the local development value."""
    return os.environ.get(name) or local_env().get(name) or default


@dataclass
class Options:
    """The global options of one CLI invocation."""

    nats_url: str
    token: str | None
    as_json: bool
    subjects: Subjects = field(default_factory=Subjects)
    inbox_prefix: str | None = None

    def caller_token(self) -> str | None:
        """The caller's token: ``--token``/``BYOM_TOKEN``, else a local admin's."""
        if self.token:
            return self.token
        secret = setting("BYOM_AUTH_SECRET")
        if secret:
            user = os.environ.get("USER") or "admin"
            return mint_token(secret, user=user, admin=True)
        return None

    def run(self, work: Callable[[ByomClient], Awaitable[T]]) -> T:
        """Connect, run ``work`` with a client, and turn errors into exits."""
        return asyncio.run(self._run(work))

    async def _run(self, work: Callable[[ByomClient], Awaitable[T]]) -> T:
        with failures():
            async with await ByomClient.connect(
                self.nats_url,
                self.caller_token(),
                subjects=self.subjects,
                inbox_prefix=self.inbox_prefix,
            ) as client:
                return await work(client)
        raise AssertionError("unreachable")  # failures() always exits on error

    def show(self, value: Any, render: Callable[[Any], Any] | None = None) -> None:
        """Print a result as JSON (``--json``) or as a readable table."""
        if self.as_json or render is None:
            typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
            return
        console.print(render(value))


@contextmanager
def failures() -> Iterator[None]:
    """Print a gateway error as one readable line and exit non-zero."""
    try:
        yield
    except ByomError as exc:
        detail = {k: v for k, v in exc.extra.items() if v is not None}
        suffix = f" {detail}" if detail else ""
        errors.print(f"[red]error[/red] {exc.code}: {exc.message}{suffix}")
        raise typer.Exit(1) from None


def table(
    title: str,
    columns: list[str],
    rows: list[dict[str, Any]],
    headers: Mapping[str, str] | None = None,
) -> Table:
    """Build a table of the given columns, one row per object.

    ``headers`` gives a shorter heading to a column whose field name would
    not fit; JSON and CSV keep the field names.
    """
    view = Table(title=title, title_justify="left")
    for column in columns:
        view.add_column((headers or {}).get(column, column))
    for row in rows:
        view.add_row(*(_cell(row.get(column)) for column in columns))
    return view


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


def options(ctx: typer.Context) -> Options:
    """The global options, as the main callback stored them."""
    found = ctx.find_object(Options)
    if found is None:
        raise RuntimeError("byom options were not set up")
    return found
