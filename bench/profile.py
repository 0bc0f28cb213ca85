"""Sample the services with py-spy during a load level and rank the hot spots.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;...
count``), one file per service. The summary ranks functions by self time
(the frame on top of the stack) and by inclusive time (anywhere on it), and
packages by self time, each as a share of the samples of that service.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PROFILED = ("router", "limiter", "metering")
RATE_HZ = 100
TOP = 12
IDLE_LEAVES = {("select", "selectors.py"), ("EpollSelector.select", "selectors.py"),
               ("wait", "threading.py"), ("Condition.wait", "threading.py"),
               ("Event.wait", "threading.py"), ("get", "queue.py"),
               ("Queue.get", "queue.py"),
               ("_connection_worker_thread", "core.py")}  # fmt: skip
"""Frames on top of a stack while a thread waits, not works; py-spy
``--nonblocking`` cannot always tell them apart by the thread's state."""
FRAMEWORK = ("asyncio/", "<frozen runpy>", "__main__.py", "shared/service.py",
             "threading.py", "asyncio.run", "events.py")  # fmt: skip
"""Frames under every stack (the event loop, the thread), left out of the
inclusive ranking because they say nothing about where the work is."""
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")

Profiling = list[asyncio.subprocess.Process]


async def start(
    pids: dict[str, int], args: argparse.Namespace, directory: Path | None
) -> Profiling:
    """Start one ``py-spy record`` per profiled service, for one level."""
    if directory is None:
        return []
    binary = shutil.which("py-spy")
    if binary is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    seconds = str(max(1, math.floor(args.warmup + args.duration)))
    return [
        await _record(binary, pids[name], seconds, directory / f"{name}.txt")
        for name in PROFILED
    ]


async def _record(
    binary: str, pid: int, seconds: str, output: Path
) -> asyncio.subprocess.Process:
    command = [binary, "record", "--pid", str(pid), "--duration", seconds,
               "--rate", str(RATE_HZ), "--format", "raw", "--full-filenames",
               "--nonblocking", "--output", str(output)]  # fmt: skip
    return await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def finish(profiling: Profiling) -> None:
    """Wait for every recorder started by ``start``."""
    for process in profiling:
        await process.wait()


def package(path: str) -> str:
    """Name the package a source path belongs to, for grouping."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for root in ("/services/", "/shared/"):
        if root in path:
            rest = path.split(root, 1)[1].split("/")
            return ".".join([root.strip("/"), *rest[:-1], rest[-1].removesuffix(".py")])
    if "/lib/python" in path:
        module = path.split("/lib/python", 1)[1].split("/", 2)[-1]
        return "stdlib " + module.split("/", 1)[0].removesuffix(".py")
    return path or "?"


def _frame(text: str) -> tuple[str, str, bool]:
    """Return a frame's short name, its package, and whether it is a wait."""
    found = _FRAME.match(text.strip())
    if not found:
        return text.strip(), "?", False
    function, path = found.group("function"), found.group("path")
    short = "/".join(path.split("/")[-2:]) if path else "?"
    idle = (function, path.rsplit("/", 1)[-1]) in IDLE_LEAVES
    return f"{function} ({short})", package(path), idle


def summarise(path: Path) -> dict[str, Any]:
    """Rank self time, inclusive time and package self time in one stack file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # first is the thread
        if not frames or frames[-1][2]:
            idle += count
            continue
        total += count
        own[frames[-1][0]] += count
        packages[frames[-1][1]] += count
        for name in {frame[0] for frame in frames if not _framework(frame[0])}:
            inclusive[name] += count
    return {
        "samples": total,
        "idle_samples": idle,
        "self": _shares(own, total),
        "inclusive": _shares(inclusive, total),
        "packages": _shares(packages, total),
    }


def _framework(name: str) -> bool:
    return any(marker in name for marker in FRAMEWORK)


def _shares(counter: Counter[str], total: int) -> list[tuple[str, float]]:
    return [(name, 100 * n / total) for name, n in counter.most_common(TOP)]


def summarise_dir(directory: Path) -> dict[str, Any]:
    return {
        name: summarise(directory / f"{name}.txt")
        for name in PROFILED
        if (directory / f"{name}.txt").exists()
    }


def show(summaries: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for name, summary in summaries.items():
        for kind in ("packages", "self"):
            table = Table(
                title=f"{name}: {kind} time, % of {summary['samples']} busy samples",
                title_justify="left",
            )
            table.add_column("%", justify="right")
            table.add_column(kind)
            for label, share in summary[kind]:
                table.add_row(f"{share:.1f}", label)
            console.print(table)


if __name__ == "__main__":
    import sys

    for argument in sys.argv[1:]:
        show({Path(argument).stem: summarise(Path(argument))})
