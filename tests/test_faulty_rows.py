"""Invalid rows checked on their cells at fault (leadsync.faulty): `leadsync validate`
maps an invalid row's faulty cells with its id and names only, and must still say
exactly what the whole row's reference check says, problem for problem."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import leadsync
from leadsync.checks import checked_chunks
from leadsync.config import Config
from leadsync.run import open_rows
from tests.conftest import write_csv, write_xlsx

# per column: good values, and values a rule refuses or that do not convert
GOOD: dict[str, list[str]] = {
    "id": ["1001", "1002", "1003", "42"],
    "first_name": ["Ann", "Zoë", ""],
    "last_name": ["Lee", "O'Brien", ""],
    "address": ["1 High St", "x" * 255, ""],
    "status": ["new", "contacted", ""],
    "office_id": ["375", "375.0", "1,213", ""],
    "gdpr_checkbox": ["yes", "FALSE", "✓", ""],
    "next_action_date": ["2025-07-12", "12/07/2025 14:30", "2025-07-12T10:00:00Z", "45850", ""],
    "questionnaire: Budget?": ["£350,000", "soon", ""],
    "questionnaire: Move by?": ["June", ""],
    "meta: source": ["Rightmove", ""],
    "utm_source": ["google", ""],
}
BAD: dict[str, list[str]] = {
    "id": ["../1", "EXAMPLE", "-3", "1001.5"],
    "first_name": ["x" * 300, "#N/A"],
    "last_name": ["y" * 300, "#REF!"],
    "address": ["z" * 300],
    "status": ["s" * 300],
    "office_id": ["Bristol", "12.5", "0"],
    "gdpr_checkbox": ["maybe", "2"],
    "next_action_date": ["31/02/2025", "tomorrow", "2025-13-01"],
    "questionnaire: Budget?": ["q" * 70_000],
    "questionnaire: Move by?": ["#DIV/0!"],
    "meta: source": ["m" * 70_000],
    "utm_source": ["u" * 300],
}
HEADERS = list(GOOD)


def corpus(n: int, seed: int) -> list[list[str]]:
    """Rows of good cells with one to three faulty ones, ids repeated now and then, names
    left blank: every way a problem can depend on more than its own cell."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        row = [rnd.choice(GOOD[h]) for h in HEADERS]
        row[0] = str(2000 + i) if rnd.random() < 0.9 else "1001"  # 1001: a duplicate
        for j in rnd.sample(range(len(HEADERS)), rnd.choice([0, 1, 1, 2, 3])):
            row[j] = rnd.choice(BAD[HEADERS[j]])
        if rnd.random() < 0.05:
            row = [row[0]] + [""] * (len(HEADERS) - 1)  # an id alone
        rows.append(row)
    return rows


def problems_of(rows: Any) -> list[tuple[Any, ...]]:
    return [
        (
            r.row,
            r.blank,
            [(p.code, p.field, p.column_index, p.stage, p.message) for p in r.problems],
        )
        for r in rows
    ]


def narrowed(src: Path, config: Config) -> list[Any]:
    """Every row as `leadsync validate` checks it (payloads not wanted)."""
    table, plan, scan = open_rows(src, config)
    out: list[Any] = []
    for checked in checked_chunks(table, plan, config, scan, None, payloads=False):
        out.extend(row for _, row in checked.slow)
    return out


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
@pytest.mark.parametrize(
    "config",
    [
        Config(chunk_rows=64),
        Config(chunk_rows=64, statuses=("new", "contacted")),
        Config(chunk_rows=64, require_names=False),
        Config(chunk_rows=64, match_by="email"),
    ],
    ids=["update", "statuses", "no-names", "match-by"],
)
def test_invalid_rows_get_the_whole_rows_problems_from_their_cells_at_fault(
    tmp_path: Path, kind: str, config: Config
) -> None:
    rows = corpus(500, seed=11)
    headers = [*HEADERS, "email"] if config.match_by else HEADERS
    if config.match_by:
        rows = [[*r, "a@b.co" if k % 3 else ""] for k, r in enumerate(rows)]
    write = write_csv if kind == "csv" else write_xlsx
    src = write(tmp_path / f"rows.{kind}", [headers, *rows])
    reference = {r.row: r for r in leadsync.mapped_rows(src, config, fast=False)}
    checked = narrowed(src, config)
    assert sum(1 for r in checked if r.problems) > 100  # many invalid rows, of every kind
    assert problems_of(checked) == problems_of(reference[r.row] for r in checked)
    # ... and it was the narrowed check that said so: an invalid row's payload holds
    # only its cells at fault, its id and names (not its good address, say)
    partial = [r for r in checked if r.problems and len(r.payload) < len(reference[r.row].payload)]
    assert len(partial) > 50
    # every row the reference finds invalid is among them
    assert {r.row for r in reference.values() if r.problems} == {
        r.row for r in checked if r.problems
    }


def test_validate_reports_are_the_references_byte_for_byte(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "rows.csv", [HEADERS, *corpus(800, seed=4)])
    out = {}
    for fast in (True, False):
        out[fast] = tmp_path / f"r-{fast}"
        leadsync.validate(src, Config(chunk_rows=100), report_dir=out[fast], fast=fast)
    for name in ("failures.csv", "successes.csv"):
        assert (out[True] / name).read_bytes() == (out[False] / name).read_bytes(), name


def test_a_sync_still_gets_each_invalid_rows_whole_payload(tmp_path: Path) -> None:
    """The engine and `mapped_rows` want payloads: there an invalid row is mapped whole."""
    src = write_csv(tmp_path / "rows.csv", [HEADERS, *corpus(300, seed=8)])
    config = Config(chunk_rows=50)
    fast = list(leadsync.mapped_rows(src, config))
    slow = list(leadsync.mapped_rows(src, config, fast=False))
    assert [(r.row, r.payload, problems_of([r])) for r in fast] == [
        (r.row, r.payload, problems_of([r])) for r in slow
    ]
    assert sum(1 for r in fast if r.problems) > 50
