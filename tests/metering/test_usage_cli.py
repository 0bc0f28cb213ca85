"""``byom usage`` renders tables, charts and CSV people and spreadsheets read."""

from __future__ import annotations

import csv
import io

from typer.testing import CliRunner

from shared.cli.main import app
from shared.cli.usage import bar, chart_lines, to_csv

ROWS = [
    {"model": "m", "bucket_start": "2026-01-02T03:00:00+00:00", "requests": 4},
    {"model": "m", "bucket_start": "2026-01-02T04:00:00+00:00", "requests": 10},
    {"model": "m", "bucket_start": "2026-01-02T05:00:00+00:00", "requests": 0},
]


def test_the_largest_value_fills_the_chart_and_others_scale_in_eighths() -> None:
    assert bar(10, 10, width=4) == "████"
    assert bar(5, 10, width=4) == "██"
    assert bar(1, 10, width=4) == "▍"
    assert bar(0, 10, width=4) == ""


def test_a_chart_has_one_labelled_bar_per_bucket() -> None:
    lines = chart_lines(ROWS, "requests", ["model"])
    assert lines == [
        "2026-01-02 03:00  m │" + bar(4, 10) + " 4",
        "2026-01-02 04:00  m │" + "█" * 50 + " 10",
        "2026-01-02 05:00  m │ 0",
    ]


def test_csv_has_a_header_and_empty_cells_for_missing_values() -> None:
    text = to_csv(ROWS, ["model", "bucket_start", "requests", "ttft_ms_p50"])
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[1] == {
        "model": "m",
        "bucket_start": "2026-01-02T04:00:00+00:00",
        "requests": "10",
        "ttft_ms_p50": "",
    }


def test_usage_is_a_verb_of_its_own_with_chart_csv_and_limits() -> None:
    result = CliRunner().invoke(app, ["usage", "--help"])
    assert result.exit_code == 0
    for option in ("--chart", "--csv", "--limits", "--bucket", "--group-by"):
        assert option in result.output
