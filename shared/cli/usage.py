"""``byom usage``: usage totals as a table, a chart over time, JSON or CSV.

byom usage --group-by model --bucket hour --chart requests
byom usage --group-by project --csv > usage.csv
byom usage --limits house-gpt          # usage against rate limits
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from rich.text import Text

from shared.cli.context import Options, console, options, table

USAGE_COLUMNS = [
    "requests", "ok", "error", "rate_limited", "prompt_tokens",
    "completion_tokens", "reasoning_tokens", "cached_tokens",
    "latency_ms_p50", "latency_ms_p95", "ttft_ms_p50",
]  # fmt: skip
HEADROOM_COLUMNS = [
    "minute", "scope", "party", "requests", "rpm", "rpm_used_pct",
    "rpm_headroom", "tokens", "tpm", "tpm_used_pct", "tpm_headroom",
]  # fmt: skip
SHORT_HEADERS = {
    "bucket_start": "bucket", "rate_limited": "limited",
    "prompt_tokens": "prompt", "completion_tokens": "completion",
    "reasoning_tokens": "reasoning", "cached_tokens": "cached",
    "latency_ms_p50": "p50 ms", "latency_ms_p95": "p95 ms",
    "ttft_ms_p50": "ttft p50 ms", "rpm_used_pct": "rpm %", "tpm_used_pct": "tpm %",
    "rpm_headroom": "rpm left", "tpm_headroom": "tpm left",
}  # fmt: skip
"""Table headings that fit a terminal; the token columns count tokens."""
CHART_WIDTH = 50
# Eighths of a block let a bar end between two characters.
_EIGHTHS = " ▏▎▍▌▋▊▉"


def usage(
    ctx: typer.Context,
    group_by: list[str] = typer.Option(
        [], help="model, project, user or application (repeat)."
    ),
    bucket: str | None = typer.Option(None, help="minute, hour or day."),
    since: str | None = typer.Option(None, "--from", help="ISO 8601 start."),
    until: str | None = typer.Option(None, "--to", help="ISO 8601 end."),
    model: str | None = typer.Option(None, help="Only this model."),
    project: str | None = typer.Option(None, help="Only this project."),
    user: str | None = typer.Option(None, help="Only this user (admins)."),
    application: str | None = typer.Option(None, help="Only this application."),
    chart: str | None = typer.Option(
        None, help="Draw this column over time (needs --bucket), e.g. requests."
    ),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV for spreadsheets."),
    limits: str | None = typer.Option(
        None, metavar="MODEL", help="Show MODEL's usage against its rate limits."
    ),
) -> None:
    """Show usage totals (administrators see everyone; users themselves)."""
    opts = options(ctx)
    people = _present(project=project, user=user)
    if limits:
        query = _query(since, until, view="limits", model=limits, filters=people)
        result = opts.run(lambda client: client.usage(query))
        _print(opts, as_csv, result, HEADROOM_COLUMNS, f"Limits of {limits}")
        return
    filters = {**people, **_present(model=model, application=application)}
    query = _query(since, until, group_by=group_by, bucket=bucket, filters=filters)
    result = opts.run(lambda client: client.usage(query))
    if chart and not (opts.as_json or as_csv):
        console.print(render_chart(result["rows"], chart, group_by))
        return
    columns = [*group_by, *(["bucket_start"] if bucket else []), *USAGE_COLUMNS]
    _print(opts, as_csv, result, columns, "Usage")


def _present(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value}


def _query(since: str | None, until: str | None, **fields: Any) -> dict[str, Any]:
    query = {"from": since, "to": until, **fields}
    return {key: value for key, value in query.items() if value is not None}


def _print(
    opts: Options, as_csv: bool, result: dict[str, Any], columns: list[str], title: str
) -> None:
    if as_csv and not opts.as_json:
        typer.echo(to_csv(result["rows"], columns), nl=False)
        return
    opts.show(result, lambda value: table(title, columns, value["rows"], SHORT_HEADERS))


def to_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """Write rows as CSV with a header; a missing value is an empty cell."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def bar(value: float, largest: float, width: int = CHART_WIDTH) -> str:
    """Draw a horizontal bar of ``value`` against ``largest``, in eighths."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / largest * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def chart_lines(
    rows: Sequence[dict[str, Any]], column: str, group_by: Sequence[str]
) -> list[str]:
    """One labelled bar per row: its bucket (or group) and the column's value."""
    values = [float(row.get(column) or 0) for row in rows]
    largest = max(values, default=0.0)
    labels = [_label(row, group_by) for row in rows]
    pad = max((len(label) for label in labels), default=0)
    return [
        f"{label.ljust(pad)} │{bar(value, largest)} {_number(value)}"
        for label, value in zip(labels, values, strict=True)
    ]


def render_chart(
    rows: Sequence[dict[str, Any]], column: str, group_by: Sequence[str]
) -> Text:
    lines = chart_lines(rows, column, group_by) or ["(no usage in this range)"]
    return Text("\n".join([f"{column} over time", *lines]))


def _label(row: dict[str, Any], group_by: Sequence[str]) -> str:
    parts = [str(row.get(key) or "-") for key in group_by]
    start = row.get("bucket_start")
    if isinstance(start, str):
        # 2026-01-02T03:04:00+00:00 reads as 2026-01-02 03:04 UTC.
        parts.insert(0, start[:16].replace("T", " "))
    return "  ".join(parts) or "all"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.1f}"
