"""Medians over runs, the JSON results file and the table on stdout."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from bench.cluster import SERVICES

MIN_WIDTH = 150
console = Console()
if console.width < MIN_WIDTH:
    console = Console(width=MIN_WIDTH)


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    if not numbers:
        return values[0] if values else None
    return statistics.median(numbers)


def median_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Take the median of every number across records of the same shape."""
    result: dict[str, Any] = {}
    for key, first in records[0].items():
        values = [record.get(key) for record in records]
        if isinstance(first, dict):
            result[key] = median_of([v for v in values if isinstance(v, dict)])
        elif isinstance(first, list):
            result[key] = [item for v in values for item in (v or [])][:5]
        else:
            result[key] = _median(values)
    return result


def medians(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Return, per level, the medians over runs (levels match by position)."""
    return [median_of([run[i] for run in runs]) for i in range(len(runs[0]))]


def write(directory: Path, name: str, results: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return path


def _ms(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def levels_table(levels: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (
        "level",
        "conc",
        "rps gw",
        "rps direct",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "+p50 ms",
        "+p99 ms",
        "cpu ms/req",
        "lag s",
        "errors",
    ):
        table.add_column(column, justify="right")  # fmt: skip
    for level in levels:
        gateway, direct = level["gateway"], level["direct"]
        table.add_row(
            level["kind"],
            str(level["concurrency"]),
            _ms(gateway["rps"], 0),
            _ms(direct["rps"], 0),
            _ms(gateway["latency_ms_p50"], 2),
            _ms(gateway["latency_ms_p95"], 2),
            _ms(gateway["latency_ms_p99"], 2),
            _ms(level["added_ms_p50"], 2),
            _ms(level["added_ms_p99"], 2),
            _ms(level["cpu_ms_per_request"]["total"], 2),
            _ms(level["metering_lag_s"], 2),
            str(int(gateway["errors"] + direct["errors"])),
            _ms(level["background_cores"], 2),
        )
    return table


def cpu_table(levels: list[dict[str, Any]]) -> Table:
    table = Table(title="CPU ms per request (median)", title_justify="left")
    table.add_column("level")
    names = [*SERVICES, "total", "nats", "provider", "bench client"]
    for name in names:
        table.add_column(name, justify="right")
    for level in levels:
        cpu = level["cpu_ms_per_request"]
        label = f"{level['kind']} x{level['concurrency']}"
        table.add_row(label, *(_ms(cpu.get(name.split()[0]), 3) for name in names))
    return table


def memory_table(memory: dict[str, dict[str, float]]) -> Table:
    table = Table(title="Memory at the end (MiB)", title_justify="left")
    for column in ("service", "rss", "peak rss"):
        table.add_column(column, justify="right")
    for name, values in memory.items():
        table.add_row(name, _ms(values["rss_mib"]), _ms(values["peak_rss_mib"]))
    return table


def show(results: dict[str, Any]) -> None:
    """Print the medians, CPU, memory and (when run) the scale comparison."""
    runs = len(results["runs"])
    console.print(levels_table(results["medians"], f"Medians over {runs} run(s)"))
    console.print(cpu_table(results["medians"]))
    console.print(memory_table(results["memory"]))
    if "scale" in results:
        show_scale(results["scale"])


def show_scale(scale: dict[str, Any]) -> None:
    table = Table(title="Scale run vs small run", title_justify="left")
    for column in (
        "run",
        "rps",
        "p50 ms",
        "p99 ms",
        "cpu ms/req",
        *SERVICES,
        "errors",
        "lag s",
    ):
        table.add_column(column, justify="right")  # fmt: skip
    for label in ("small", "scale"):
        level = scale[label]
        cpu = level["cpu_ms_per_request"]
        table.add_row(
            label,
            _ms(level["rps"], 0),
            _ms(level["latency_ms_p50"], 2),
            _ms(level["latency_ms_p99"], 2),
            _ms(cpu["total"], 3),
            *(_ms(cpu[name], 3) for name in SERVICES),
            str(level["errors"]),
            _ms(level["metering_lag_s"], 2),
        )
    console.print(table)
    limiter = scale["limiter_memory"]
    console.print(
        f"models registered: {scale['models']} in {scale['register_s']:.1f} s; "
        f"users touched: {scale['users_touched']}; projects: {scale['projects']}\n"
        f"limiter RSS {limiter['before_mib']:.1f} -> {limiter['after_mib']:.1f} MiB "
        f"(peak {limiter['peak_mib']:.1f}); "
        f"{limiter['mib_per_100k_users']:.1f} MiB per 100,000 users' windows"
    )
