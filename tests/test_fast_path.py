"""The columnar fast path gives exactly the reference (row-by-row) results.

Generated files mix plain rows with every edge case of the foundation tests; the fast
path (pyarrow reader, columnar checks) and the reference path (csv module, per-row
mapping) must agree row by row on verdict, problems and payload, and write byte-identical
CSV reports.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import leadsync
from leadsync.columnar import PY_SPACE, Cells, csv_lines, csv_text, trimmed
from leadsync.config import Config, parse_mapping, read_toml
from tests.conftest import write_csv, write_xlsx

HEADERS = [
    "id",
    "First Name",
    "last_name",
    "address",
    "status",
    "office_id",
    "gdpr_checkbox",
    "next_action_date",
    "questionnaire: Budget?",
    "questionnaire: Move by?",
    "meta: source",
    "utm_source",
    "Notes",
]

# Cells per column: plain values the fast path clears, and edge cases it must hand over
TEXT = [
    "Olivia",
    "Zoë",
    "Siobhán",
    "O'Brien",
    "x" * 50,
    "x" * 51,
    "é" * 50,
    "é" * 51,
    " Ann ",
    "\u00a0Ann",
    "Ann\u3000",
    "A\tB",
    "A\nB",
    "\x07bell",
    "a\x1fb",
    "Ann\x85",
    "Ann\x85Lee",  # a C1 control inside
    "Ann\u00a0Lee",  # a no-break space inside (kept: only the ends are trimmed)
    "£250k",  # starts with C2, not a C1 control
    "\u00a0",
    "",
    "   ",
    "=cmd|' /C calc'!A0",
    "\uff1dcmd",  # a full-width = (spreadsheets run it too)
    "+44 7700",
    "-1",
    "@risk",
    'say "hi"',
    "a,b",
    "\U0001f600" * 50,
    "\U0001f600" * 51,
    "null",
    "None",
    "N/A",
    "NaN",
]
ADDRESS = ["14 Elm Grove, Bristol", "a" * 255, "a" * 256, "Flat 2\r\n3 Mill Lane", "", "\\path"]
ADDRESS += [
    "#N/A",
    " #ref! ",
    "#n/a",
    "#3 Dock Rd",
    "#",
    "#blackfriday",
    "#Zoë",
]  # Excel errors, or not
ADDRESS += ["  =HYPERLINK(1)", "\n@SUM(1)", " plain", "\uff0b1"]  # formulas behind spaces
ADDRESS += ["1 Mill\x7fLn, Zoë Ct"]  # DEL with non-ASCII text inside ASCII ends: not plain
STATUS = ["New", "Contacted", "contacted", "Lost", "", "Valuation booked"]
OFFICE = [
    "1213",
    "375",
    "375.0",
    "0375",
    "12.5",
    "-1",
    "0",
    "1e3",
    "",
    "abc",
    "99999999999999999999",
    "١٢",
]
BOOLEAN = ["yes", "no", "Y", "n", "TRUE", "false", "1", "0", "✓", "✗", "maybe", "", " yes"]
DATES = [
    "12/07/2025",
    "2025-07-12",
    "31/02/2025",
    "29/02/2024",
    "29/02/2025",
    "2024-02-29",
    "2025-13-01",
    "0000-01-01",
    "1/7/2025",
    "12/7/2025",
    "2025-07-12 14:30",
    "12 July 2025",
    "07/12/2025",
    "",
    "00/01/2025",
    "2025/07/12",
    "12-07-2025",
    "1899-12-31",
    # the API's own date-time form (cleared in bulk since issue 14), and its near misses
    "2025-07-12T10:00:00Z",
    "2024-02-29T23:59:59Z",
    "2025-02-29T10:00:00Z",
    "2025-07-12T24:00:00Z",
    "2025-07-12T10:60:00Z",
    "2025-07-12T10:00:60Z",
    "2025-07-12t10:00:00z",
    "2025-07-12T10:00:00+01:00",
    "2025-07-12T10:00:00.5Z",
    "0001-01-01T00:00:00Z",
    "2025-07-12 10:00:00Z",
    "2025-07-12T1:00:00Z",
]
ANSWERS = ["£250k", "ASAP", "", "  ", "é" * 400, "x" * 700, 'a "quoted" / answer', "\x01"]
IDS = [
    "#N/A",
    "1001",
    "1002",
    "1002.0",  # lead 1002 written through a float: a duplicate of "1002"
    "7.00",
    "A.77",
    "A-77",
    "lead_9",
    " 12 ",
    "../1",
    "1?x=y",
    "EXAMPLE",
    "",
    "1.5",
    "１２",
    "a..b",
]


def generated_rows(n: int, seed: int) -> list[list[Any]]:
    rnd = random.Random(seed)
    rows: list[list[Any]] = []
    for i in range(n):
        plain = rnd.random() < 0.6
        lead = str(5000 + i) if plain or rnd.random() < 0.5 else rnd.choice(IDS)
        if plain:
            row = [
                lead,
                rnd.choice(["Olivia", "Zoë", "Rhys"]),
                "Smith",
                "14 Elm Grove, Bristol",
                rnd.choice(["New", "Contacted"]),
                "1213",
                rnd.choice(["yes", "N"]),
                rnd.choice(["12/07/2025", "2025-08-01", ""]),
                rnd.choice(["£250k", ""]),
                "ASAP",
                "rightmove",
                "portal",
                "note",
            ]
        else:
            row = [
                lead,
                rnd.choice(TEXT),
                rnd.choice(TEXT),
                rnd.choice(ADDRESS),
                rnd.choice(STATUS),
                rnd.choice(OFFICE),
                rnd.choice(BOOLEAN),
                rnd.choice(DATES),
                rnd.choice(ANSWERS),
                rnd.choice(ANSWERS),
                rnd.choice(TEXT),
                rnd.choice(TEXT),
                rnd.choice(TEXT),
            ]
        if rnd.random() < 0.03:
            row = [lead] + [""] * (len(HEADERS) - 1)  # blank row with an id
        if rnd.random() < 0.02:
            row = [rnd.choice(["", " "])] * len(HEADERS)  # all blank
        rows.append(row)
    rows.append(["1001", "Dup", "Licate"] + [""] * (len(HEADERS) - 3))  # duplicate id
    return rows


def outcome(row: Any) -> tuple[Any, ...]:
    return (
        row.row,
        row.lead_id,
        row.match,
        row.blank,
        [(p.code, p.field, p.column_index, p.stage, p.message) for p in row.problems],
        json.dumps(row.payload, ensure_ascii=False),
    )


def assert_same(path: Path, config: Config, tmp_path: Path) -> int:
    fast = [outcome(r) for r in leadsync.mapped_rows(path, config, fast=True)]
    slow = [outcome(r) for r in leadsync.mapped_rows(path, config, fast=False)]
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert a == b
    out = {}
    for mode in (True, False):
        out[mode] = tmp_path / f"{path.stem}-{mode}"
        leadsync.validate(path, config, report_dir=out[mode], fast=mode, xlsx_report=False)
    for name in ("failures.csv", "successes.csv"):
        assert (out[True] / name).read_bytes() == (out[False] / name).read_bytes(), name
    return len(fast)


CONFIGS = {
    "default": Config(chunk_rows=97),
    "mdy-statuses-optional-names": Config(
        chunk_rows=500,
        date_order="MDY",
        statuses=("New", "Contacted", "Lost"),
        require_names=False,
    ),
    "defaults-and-value-maps": Config(
        chunk_rows=64,
        defaults={"utm_medium": "portal", "last_name": "Unknown"},
        values={"gdpr_checkbox": {"si": True}},
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_path_matches_reference_on_csv(name: str, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "edge.csv", [HEADERS, *generated_rows(900, seed=11)])
    assert assert_same(src, CONFIGS[name], tmp_path) == 901


# Any cell at all: random text (every Unicode category but surrogates and NUL), the
# edge-case pools, and text shaped like the numbers, dates and booleans the fast path parses
ANY_CELL = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
    st.sampled_from(TEXT + ADDRESS + STATUS + OFFICE + BOOLEAN + DATES + ANSWERS + IDS),
    st.from_regex(r"\A[ +-]?[0-9]{0,20}(\.[0-9]{0,3})?\Z"),
    st.from_regex(r"\A[0-9]{1,4}[-/][0-9]{1,2}[-/][0-9]{1,4}\Z"),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z"),
)
BASE_ROW = ["", "Ann", "Lee", "1 High St", "New", "1213", "yes", "2025-07-12", "£250k", "ASAP"]
BASE_ROW += ["zoopla", "rightmove", "note"]


def _changed(lead: int, changes: list[tuple[int, str]]) -> list[str]:
    row = [str(lead), *BASE_ROW[1:]]
    for column, cell in changes:
        row[column] = cell
    return row


# a valid row with up to three cells replaced: each replaced cell decides the verdict
ANY_ROW = st.builds(
    _changed,
    st.integers(1, 40),
    st.lists(st.tuples(st.integers(0, len(HEADERS) - 1), ANY_CELL), max_size=3),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ANY_ROW, min_size=1, max_size=25), name=st.sampled_from(sorted(CONFIGS)))
def test_fast_path_matches_reference_on_any_cells(
    rows: list[list[str]], name: str, tmp_path: Path
) -> None:
    """Random cells in every column: the fast path may clear a row only when the
    reference path finds nothing wrong with it, and must then say exactly the same."""
    here = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example
    src = write_csv(here / "any.csv", [HEADERS, *rows])
    assert assert_same(src, CONFIGS[name], here) == len(rows)


def test_fast_path_matches_reference_on_xlsx_with_typed_cells(tmp_path: Path) -> None:
    rows: list[list[Any]] = [list(r) for r in generated_rows(400, seed=5)]
    rnd = random.Random(3)
    typed = [
        375,
        375.0,
        12.5,
        0,
        1,
        True,
        False,
        dt.date(2025, 7, 12),
        dt.datetime(2025, 7, 12, 14, 30),
        dt.date(2024, 2, 29),
        1001,
        2**60,
        None,
        -3,
        45850,  # an Excel serial (a date that lost its format) ...
        45850.5625,  # ... with a time
    ]
    for row in rows:
        for j in (0, 5, 6, 7, 8, 11):
            if rnd.random() < 0.3:
                row[j] = rnd.choice(typed)
    # openpyxl refuses control characters in cells
    clean = [
        [c.translate({k: None for k in range(32)}) if isinstance(c, str) else c for c in r]
        for r in rows
    ]
    src = write_xlsx(tmp_path / "edge.xlsx", [HEADERS, *clean])
    assert assert_same(src, Config(chunk_rows=120), tmp_path) == 401


def test_typed_cells_in_text_columns_are_cleared_in_bulk_as_the_reference_says(
    tmp_path: Path,
) -> None:
    """A float, a flag, a date-time, a time of day or a duration cell in an address,
    an answer, a meta value or a utm column is text as the reference reads it: the
    columnar path clears its row too (none is left to the row-by-row path)."""
    header = ["id", "first_name", "last_name", "address"]
    header += ["questionnaire: Move by?", "meta: call", "utm_source"]
    typed: list[Any] = [
        12.5,
        True,
        False,
        dt.datetime(2025, 7, 12, 14, 30),
        dt.time(14, 30),
        dt.timedelta(hours=30),
        dt.timedelta(minutes=5, seconds=30),
        dt.date(2025, 7, 12),
        -0.25,
        "text",
    ]
    rows = [
        [1000 + i, "Ann", "Lee", *(typed[(i + k) % len(typed)] for k in range(4))]
        for i in range(200)
    ]
    src = write_xlsx(tmp_path / "typed.xlsx", [header, *rows])
    config = Config(chunk_rows=70)
    assert assert_same(src, config, tmp_path) == 200
    assert left_to_row_by_row(src, config) == 0
    sent = next(iter(leadsync.mapped_rows(src, config))).payload
    assert sent["address"] == "12.5"
    assert sent["questionnaire"] == [["Move by?", "TRUE"]]
    assert sent["meta"] == {"call": "FALSE"}
    assert sent["utm_source"] == "2025-07-12 14:30:00"


def test_fallback_mid_file_matches_reference(tmp_path: Path) -> None:
    """A ragged row halfway makes pyarrow stop: the csv module reads on from there."""
    rows = generated_rows(300, seed=2)
    rows[250] = rows[250] + ["spill", "more"]
    rows[260] = rows[260][:3]
    src = write_csv(tmp_path / "ragged.csv", [HEADERS, *rows])
    assert assert_same(src, Config(chunk_rows=50), tmp_path) == 301


@pytest.mark.parametrize(
    ("encoding", "newline"), [("utf-8-sig", "\n"), ("cp1252", "\r\n"), ("utf-16", "\r\n")]
)
def test_other_encodings_match_reference(encoding: str, newline: str, tmp_path: Path) -> None:
    rows = [r for r in generated_rows(120, seed=9)]
    if encoding == "cp1252":
        rows = [[c.encode("cp1252", "replace").decode("cp1252") for c in r] for r in rows]
    src = write_csv(tmp_path / "enc.csv", [HEADERS, *rows], encoding=encoding, newline=newline)
    assert assert_same(src, Config(chunk_rows=40), tmp_path) == 121


def test_quoted_line_breaks_across_pyarrow_blocks(tmp_path: Path) -> None:
    """Quoted newlines land on pyarrow's 1 MB block boundaries somewhere in 30k rows."""
    rows = [[str(i), "Ann", "Lee", f"Flat {i}\n{i} Mill Lane, Bath"] for i in range(30_000)]
    src = write_csv(tmp_path / "nl.csv", [["id", "first_name", "last_name", "address"], *rows])
    assert src.stat().st_size > 1 << 20
    assert assert_same(src, Config(), tmp_path) == 30_000
    [last] = [r for r in leadsync.mapped_rows(src) if r.row == 30_001]
    assert last.payload["address"] == "Flat 29999\n29999 Mill Lane, Bath"


# -- the building blocks ------------------------------------------------------------


@given(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), min_size=1, max_size=8)
)
def test_csv_fields_are_written_exactly_as_the_csv_module_writes_them(cells: list[str]) -> None:
    out = io.StringIO()
    csv.writer(out).writerow(["0", *cells])
    columns = [pa.array(["0"]), *(Cells(pa.array([c])).csv_field(neutralise=False) for c in cells)]
    assert b"".join(csv_lines(columns)) == out.getvalue().encode()
    assert [csv_text(c) for c in cells] == out.getvalue()[2:-2].split(",") or any(
        ch in c for c in cells for ch in ',"\r\n'
    )


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_trimmed_is_str_strip(text: str) -> None:
    assert trimmed(Cells(pa.array([text]))).to_pylist() == [text.strip()]


def test_py_space_is_str_isspace() -> None:
    chars = [chr(c) for c in range(0x3100) if not 0xD800 <= c <= 0xDFFF]
    matched = pc.match_substring_regex(pa.array(chars), f"^{PY_SPACE}$").to_pylist()
    assert [c for c, m in zip(chars, matched, strict=True) if m] == [
        c for c in chars if c.isspace()
    ]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
@example("a\x85b")  # a C1 control between ASCII ends
@example("0\x7f\xa00")  # DEL inside, hidden from the byte maximum by a non-ASCII byte
@example("é\x9fé")
@example("Siobhán")  # plain, and needs no regex to say so
def test_plain_cells_need_no_trimming_and_hold_no_control_characters(text: str) -> None:
    plain = bool(Cells(pa.array([text])).plain[0])
    control = any((ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F for c in text)
    assert plain == (text == text.strip() and bool(text) and not control)


@given(
    st.lists(st.text(alphabet=st.sampled_from(list(',"\\é\x00\x7f \u3000£\n=a')), max_size=3)),
    st.integers(0, 3),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_columns_byte_facts_are_each_cells_own(texts: list[str], cut: int) -> None:
    # Cells reads its facts from the column's bytes at once (blank cells among them, at
    # the ends, a sliced array): each must be what that cell's own bytes say
    from leadsync.columnar import _table

    array = pa.array(["x", *texts]).slice(min(cut, len(texts)))
    cells, lut = Cells(array), _table()
    for k, text in enumerate(array.to_pylist()):
        raw = text.encode()
        assert cells.blank[k] == (not raw) and cells.nbytes[k] == len(raw)
        assert cells.first_byte[k] == (raw[0] if raw else 0)
        assert cells.first[k] == (lut[raw[0]] if raw else 0)
        assert cells.last[k] == (lut[raw[-1]] if raw else 0)
        expected = 0
        for byte in raw:
            expected |= int(lut[byte])
        got = int(cells.flags[k])
        assert got == expected or _printable_flags(got, expected)


def _printable_flags(got: int, every: int) -> bool:
    """Printable text: Cells looks for the bytes that matter (quote, comma, backslash,
    non-ASCII), not every flag of every byte; those it must get right."""
    from leadsync.columnar import _DQUOTE, _ESCAPE, _HIGH, _QUOTE

    wanted = _QUOTE | _DQUOTE | _ESCAPE | _HIGH
    return (got & wanted) == (every & wanted)


def test_every_code_point_at_either_edge_is_judged_as_the_plain_rule_says() -> None:
    # Cells.plain tells most non-ASCII edges by their bytes and sends only a few code
    # points' cells to the regex: for every code point, at the start and at the end of
    # a cell, its verdict is the Python definition's
    points = [chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    cells = [p + "a" for p in points] + ["a" + p for p in points] + points
    got = Cells(pa.array(cells)).plain.tolist()
    control = {chr(c) for c in range(0x7F, 0xA0)}
    wrong = [
        c
        for c, g in zip(cells, got, strict=True)
        if g != (c == c.strip() and not (control & set(c)))
    ]
    assert wrong == []


def test_the_fast_path_clears_the_plain_rows(tmp_path: Path) -> None:
    """The comparisons above mean something only if the columnar path does the work."""
    from leadsync.checks import checked_chunks
    from leadsync.mapper import plan_columns
    from leadsync.reader import open_table
    from leadsync.validator import scan_ids

    src = write_csv(tmp_path / "edge.csv", [HEADERS, *generated_rows(900, seed=11)])
    config = Config(chunk_rows=97)
    table = open_table(src)
    plan = plan_columns(table.headers, config)
    chunks = list(checked_chunks(table, plan, config, scan_ids(table, plan), None))
    slow = sum(len(c.slow) for c in chunks)
    assert all(not isinstance(c.chunk.columns[0], list) for c in chunks)  # pyarrow read it
    assert 0 < slow < 0.5 * 901  # ~60% of the rows are plain


def test_every_date_form_is_cleared_in_bulk(tmp_path: Path) -> None:
    """Issue 14: a column of the API's own date-times (2025-07-12T10:00:00Z) left the
    fast path row by row, and validated 6x slower than dates. Now every form clears."""
    from leadsync.checks import checked_chunks
    from leadsync.mapper import plan_columns
    from leadsync.reader import open_table
    from leadsync.validator import scan_ids

    forms = ["2025-07-12", "12/07/2025", "2025-07-12T10:00:00Z", ""]
    rows = [[str(1000 + i), "Ann", "Lee", forms[i % 4]] for i in range(400)]
    src = write_csv(
        tmp_path / "dates.csv", [["id", "first_name", "last_name", "next_action_date"], *rows]
    )
    config = Config(chunk_rows=97)
    table = open_table(src)
    plan = plan_columns(table.headers, config)
    chunks = list(checked_chunks(table, plan, config, scan_ids(table, plan), None))
    assert sum(len(c.slow) for c in chunks) == 0
    sent = [r.payload.get("next_action_date") for r in leadsync.mapped_rows(src, config)]
    assert sent[:4] == ["2025-07-12", "2025-07-12", "2025-07-12T10:00:00Z", None]


def test_hashtags_stay_on_the_fast_path_only_excel_errors_leave_it(tmp_path: Path) -> None:
    from leadsync.mapper import map_columns, plan_columns
    from leadsync.reader import open_table

    cells = ["#blackfriday", "#N/A", "#n/a", "#Zoë", "#REF!", "spring"]
    rows = [["id", "first_name", "last_name", "utm_campaign"]]
    rows += [[str(i + 1), "Ann", "Lee", c] for i, c in enumerate(cells)]
    table = open_table(write_csv(tmp_path / "tags.csv", rows))
    config = Config()
    [chunk] = list(table.chunks(100))
    mapped = map_columns(chunk, plan_columns(table.headers, config), config)
    # the errors go row by row (which says what is wrong), and so does non-ASCII "#" text
    assert mapped.simple.tolist() == [True, False, False, False, False, True]


def test_a_del_character_between_ascii_ends_is_caught_on_the_fast_path(tmp_path: Path) -> None:
    # DEL (0x7F) inside a cell with a non-ASCII character and ASCII ends: the column's
    # byte maximum is not 0x7F, so only a per-byte look finds it (the fast path once
    # cleared this row, and would have sent the control character)
    rows = [["id", "first_name", "last_name", "address"], ["1", "A", "B", "1 Mill\x7fLn, Zoë Ct"]]
    src = write_csv(tmp_path / "del.csv", rows)
    for fast in (True, False):
        [row] = leadsync.mapped_rows(src, fast=fast)
        assert [(p.field, p.code) for p in row.problems] == [("address", "control_character")]


@pytest.mark.parametrize(
    "config", [Config(chunk_rows=700), Config(chunk_rows=300, date_order="MDY")]
)
def test_every_value_form_mixed_is_cleared_by_the_columnar_path_as_the_reference_says(
    tmp_path: Path, config: Config
) -> None:
    """The benchmark's mixed shape (every date form, 1213/1214.0/1,215, every flag
    spelling, non-ASCII answers, ~3% invalid): identical verdicts, payloads and reports
    on both paths; and only rows that are invalid leave the columnar path."""
    from benchmarks.gen import HEADERS as BENCH_HEADERS
    from benchmarks.gen import mixed_rows

    src = write_csv(tmp_path / "mixed.csv", [BENCH_HEADERS, *mixed_rows(3000)])
    assert assert_same(src, config, tmp_path) == 3000
    invalid = sum(1 for r in leadsync.mapped_rows(src, config, fast=False) if r.problems)
    left = left_to_row_by_row(src, config)
    assert invalid > 0 and left <= invalid


def test_excel_serial_cells_of_a_workbook_are_cleared_in_bulk(tmp_path: Path) -> None:
    header = ["id", "first_name", "last_name", "next_action_date"]
    serials: list[Any] = [45850, 45850.5625, 45850.0, 45956.0625, "45850", "45850.25"]
    rows = [[1000 + i, "Ann", "Lee", serials[i % len(serials)]] for i in range(300)]
    src = write_xlsx(tmp_path / "serials.xlsx", [header, *rows])
    config = Config(chunk_rows=70)
    assert left_to_row_by_row(src, config) == 0
    assert assert_same(src, config, tmp_path) == 300
    sent = [r.payload["next_action_date"] for r in leadsync.mapped_rows(src, config)]
    # 26 October 2025 01:30 is read as the first of the two (BST)
    assert sent[:6] == [
        "2025-07-12", "2025-07-12T12:30:00Z", "2025-07-12",
        "2025-10-26T00:30:00Z", "2025-07-12", "2025-07-12T05:00:00Z",
    ]  # fmt: skip


_EMAILS = ["ann@example.com", " bo@example.co.uk ", "", "#N/A", "zoë@exämple.com", "x"]


@pytest.mark.parametrize("by", ["email", "phone"])
def test_match_by_rows_are_cleared_column_by_column_as_the_reference_says(
    by: str, tmp_path: Path
) -> None:
    """--match-by: a row without an id but with an email (or phone) is looked up when it
    is sent; without either it is id_missing. Both paths agree on the edge rows, in a CSV
    and a workbook (whose phone numbers are number cells); on the benchmark's mixed rows
    only invalid rows are left to the row-by-row path."""
    from benchmarks.gen import HEADERS as BENCH_HEADERS
    from benchmarks.gen import mixed_rows

    rnd = random.Random(by)
    values = (
        _EMAILS if by == "email" else ["07700 900123", 7700900123, "", " +44 20 7946 0958", 1.5]
    )

    def with_match(rows: Any) -> list[list[Any]]:
        return [["" if rnd.random() < 0.4 else r[0], *r[1:], rnd.choice(values)] for r in rows]

    edge = with_match(generated_rows(600, seed=21))
    edge.append(["", "Only", "Match"] + [""] * (len(HEADERS) - 3) + [""])  # neither: invalid
    header = [*HEADERS, by]
    config = Config(chunk_rows=97, match_by=by)  # type: ignore[arg-type]
    clean = [
        [c.translate({k: None for k in range(32)}) if isinstance(c, str) else c for c in r]
        for r in edge
    ]
    for src in (
        write_csv(tmp_path / "match.csv", [header, *([str(c) for c in r] for r in edge)]),
        write_xlsx(tmp_path / "match.xlsx", [header, *clean]),
    ):
        assert assert_same(src, config, tmp_path) == len(edge)
        mapped = list(leadsync.mapped_rows(src, config))
        looked_up = [r for r in mapped if r.lead_id is None and r.match and not r.problems]
        assert sum(1 for r in looked_up if not r.blank) > 50  # each to be looked up
        assert mapped[-1].problems[0].code == "id_missing"
    mixed = with_match(mixed_rows(2000))
    src = write_csv(
        tmp_path / "mixed.csv", [[*BENCH_HEADERS, by], *([str(c) for c in r] for r in mixed)]
    )
    assert assert_same(src, config, tmp_path) == len(mixed)
    invalid = sum(1 for r in leadsync.mapped_rows(src, config, fast=False) if r.problems)
    assert 0 < left_to_row_by_row(src, config) <= invalid


def left_to_row_by_row(path: Path, config: Config) -> int:
    """Rows the columnar path could not clear (they would be mapped one by one)."""
    from leadsync.mapper import map_columns, plan_columns
    from leadsync.reader import open_table
    from leadsync.validator import check_columns

    table = open_table(path)
    plan = plan_columns(table.headers, config)
    judged: dict[tuple[str, str], str | None] = {}
    left = 0
    for chunk in table.chunks(config.chunk_rows):
        columns = map_columns(chunk, plan, config, judged)
        left += int((~(check_columns(columns, plan, config) | columns.blank)).sum())
    return left


def test_invalid_rows_lines_are_the_csv_modules_bytes(tmp_path: Path) -> None:
    """failures.csv's lines for invalid rows are built column by column on the fast
    path: formula-like ids, quotes, commas and line breaks in the cells and messages
    come out as the row-by-row path (csv.writer) writes them."""
    rows = [
        ["id", "first_name", "last_name", "office_id", "next_action_date"],
        ["=1+1", "Ann", "Lee", "1213", "2025-07-12"],
        ["1002", '"Quoted", name', "Lee", "12,5", "2025-07-12"],
        ["1003", "Line\nbreak", "", "1213", "31/02/2025"],
        ["1004", "@cmd", "-Lee", "+1", "yes"],
        ["1005", "Bo", "Khan", "1213", "2025-07-12T10:00:00Z"],
        ["-1006", "Cy", "O'Neil", "Bristol", "2025-07-12"],
    ]
    src = write_csv(tmp_path / "tricky.csv", rows)
    assert assert_same(src, Config(), tmp_path) == 6
    lines = (tmp_path / "tricky-True" / "failures.csv").read_bytes().split(b"\r\n")
    assert any(line.startswith(b"2,'=1+1,invalid") for line in lines)


# -- value maps and full names, column by column ----------------------------------------

MAPPED = """
[columns]
"Lead Name" = "full_name"
"Rooms" = "questionnaire: Rooms?"

[values.status]
hot = "New"
" Warm " = "Contacted"
"straße" = "Lost"
typo = "Ne\\u0001w"

[values.gdpr_checkbox]
"opted in" = true
"opted out" = 0
"ask" = 2

[values.office_id]
bath = 1213
bristol = 1214.0
half = 1213.5

[values.next_action_date]
tbc = 2025-12-31
soon = 2025-07-12T14:30:00
later = "12 July 2025"
"""


def _mapped_rows(n: int) -> list[list[str]]:
    rnd = random.Random(14)
    rows = [["id", "Lead Name", "first_name", "status", "gdpr_checkbox", "office_id",
             "next_action_date", "Rooms"]]  # fmt: skip
    names = ["Ann Marie Lee", "Zoë Ó Briain", "Cher", "Lee, Ann", "  ", "", "Bo\tKhan", "Al  Bo"]
    statuses = ["HOT", "warm", "Straße", "STRASSE", "New", "typo", "Lost", ""]
    flags = ["Opted In", "opted out", "ask", "yes", "", "maybe"]
    offices = ["Bath", "BRISTOL", "half", "1215", "", "Leeds"]
    dates = ["TBC", "soon", "later", "2025-07-12", "", "never"]
    rooms = ["two", "None", "3", "", "many"]
    for i in range(n):
        rows.append([
            str(5000 + i), rnd.choice(names), rnd.choice(["", "", "Own"]), rnd.choice(statuses),
            rnd.choice(flags), rnd.choice(offices), rnd.choice(dates), rnd.choice(rooms),
        ])  # fmt: skip
    return rows


@pytest.mark.parametrize("order", ["first last", "last, first"])
def test_value_maps_and_full_names_are_mapped_column_by_column_as_row_by_row(
    tmp_path: Path, order: str
) -> None:
    (tmp_path / "m.toml").write_text(MAPPED + f'\n[rules]\nname_order = "{order}"\n')
    config = replace(parse_mapping(read_toml(tmp_path / "m.toml", "mapping")), chunk_rows=61)
    src = write_csv(tmp_path / "mapped.csv", _mapped_rows(1200))
    assert assert_same(src, config, tmp_path) == 1200
    reference = list(leadsync.mapped_rows(src, config, fast=False))
    invalid = sum(bool(r.problems) for r in reference)
    blank = sum(r.blank for r in reference)
    # every row the reference finds valid is cleared column by column: value maps and
    # full names no longer send a file row by row
    assert left_to_row_by_row(src, config) == invalid
    assert 0 < invalid < 1200 - blank
    valid = [r for r in reference if not r.problems and not r.blank]
    assert {r.payload.get("status") for r in valid} >= {"New", "Contacted", "Lost"}
    assert {r.payload.get("gdpr_checkbox") for r in valid} >= {True, False}
    assert {r.payload.get("office_id") for r in valid} >= {1213, 1214, 1215}
    dates = {r.payload.get("next_action_date") for r in valid}
    assert dates >= {"2025-12-31", "2025-07-12T13:30:00Z", "2025-07-12"}
    firsts = {r.payload.get("first_name") for r in valid}
    assert "Own" in firsts and ("Ann Marie" in firsts or "Ann" in firsts)


JSON_CELLS = {
    "questionnaire": [
        '[["Budget?", "£250k"], ["Rooms?", "3"]]',
        '[ ["Move by?","ASAP"] ]',
        '[["Zoë\'s café?", "déjà vu — 🏠"]]',
        "[]",
        '[["Budget?"]]',
        '{"Budget?": "£1"}',
        "[oops",
        '[["Budget?", 5]]',
        '[["Notes?", "' + "é" * 400 + '"]]',  # over 2048 bytes as PHP counts them
        "",
    ],
    "meta": [
        '{"source": "rightmove", "ref": "A1"}',
        '{"agent":"Sarah","agent":"Tom"}',  # a repeated key: the last wins, as json.loads
        "{}",
        '{"k": 1}',
        '{"n": NaN}',
        '["not", "an object"]',
        '{"note": "' + "é" * 200 + '"}',  # over 1024 bytes
        "",
    ],
}


@pytest.mark.parametrize("with_question_column", [False, True])
def test_json_questionnaire_and_meta_cells_are_checked_once_per_distinct_cell(
    tmp_path: Path, with_question_column: bool
) -> None:
    rnd = random.Random(17)
    header = ["id", "first_name", "last_name", "questionnaire", "meta"]
    if with_question_column:
        header.append("questionnaire: Parking?")  # merged with the JSON: row by row
    rows = [header]
    for i in range(900):
        rows.append([str(7000 + i), "Ann", "Lee", rnd.choice(JSON_CELLS["questionnaire"]),
                     rnd.choice(JSON_CELLS["meta"]), "yes"][: len(header)])  # fmt: skip
    rows.append([str(8000), "Ann", "Lee", '[["Ref?", "' + str(rnd.random()) + '"]]', "", ""])
    src = write_csv(tmp_path / "json.csv", [r[: len(header)] for r in rows])
    config = Config(chunk_rows=83)
    assert assert_same(src, config, tmp_path) == 901
    reference = list(leadsync.mapped_rows(src, config, fast=False))
    invalid = sum(bool(r.problems) for r in reference)
    # every valid row is cleared column by column, but those whose [] or {} leaves its
    # field out (the row by row path settles whether the row is blank)
    emptied = sum(
        1
        for r, cells in zip(reference, rows[1:], strict=True)
        if not r.problems and (cells[3] == "[]" or cells[4] == "{}")
    )
    assert invalid > 100 and 901 - invalid - emptied > 50
    left = left_to_row_by_row(src, config)
    if with_question_column:  # only the rows whose JSON cell is blank are cleared
        assert left == sum(
            1
            for r, cells in zip(reference, rows[1:], strict=True)
            if r.problems or cells[3] != "" or cells[4] == "{}"
        )
    else:
        assert left == invalid + emptied


_CREATE_HEADERS = [
    "id", "type", "first_name", "last_name", "email", "phone", "postcode", "advert_address",
    "advert_postcode", "source", "status", "office_id", "next_action_date", "message",
    "questionnaire: Budget?",
]  # fmt: skip


def _create_rows(n: int, seed: int, edges: bool) -> list[list[Any]]:
    """New leads (and some updates): every type, their needs met or not, emails and
    phones good and bad, people on two rows, names missing (``edges``: often)."""
    rnd = random.Random(seed)
    rows: list[list[Any]] = []
    odd = 0.35 if edges else 0.02

    def pick(good: Any, bad: list[Any]) -> Any:
        return rnd.choice(bad) if rnd.random() < odd else good

    for i in range(n):
        # (a type with spaces round it, an id of spaces: valid, but not plain text)
        kind = pick(rnd.choice(["sale", "let", "vendor", "landlord", "Sale", "Vendor"]),
                    ["buyer", "", "#N/A", *([" let "] if edges else [])])  # fmt: skip
        advert = kind.strip().lower() in ("sale", "let")
        rows.append(
            [
                pick("", [str(7000 + i), "1.5", *([" "] if edges else [])])
                if rnd.random() < 0.8
                else str(7000 + i),
                kind,
                pick(rnd.choice(["Ann", "Zoë", "Rhys"]), ["", "x" * 51]),
                pick("Lee", [""]),
                pick(
                    f"p{i}@example.com", ["not-an-email", "", "dup@example.com", "DUP@example.com "]
                ),
                pick(f"07700 9{i:05d}", ["12", "", "phone"]),
                pick("" if advert else "BS1 4DJ", ["", "BS1 4DJ"]),
                pick("1 High St" if advert else "", ["", "1 High St"]),
                pick("BA1 1AA" if advert else "", ["", "BA1 1AA"]),
                pick(rnd.choice(["", "rightmove", "Rightmove Valuation", "zoopla"]), ["myspace"]),
                pick(rnd.choice(["New", ""]), ["New"]),
                pick(rnd.choice(["1213", "1214.0", ""]), ["12.5"]),
                pick(rnd.choice(["12/07/2025", "", "2025-07-12T10:00:00Z"]), ["31/02/2025"]),
                pick("call after 6", ["", "m" * 5001]),
                pick("£250k", ["", "Zoë's café"]),
            ]
        )
    return rows


@pytest.mark.parametrize(
    "config",
    [
        Config(chunk_rows=83, create=True),
        Config(chunk_rows=200, create=True, require_names=False, defaults={"source": "zoopla"}),
        Config(chunk_rows=120, create=True, match_by="email"),
        Config(chunk_rows=150, create=True, defaults={"type": "vendor"}),
    ],
)
def test_create_rows_are_cleared_column_by_column_as_the_reference_says(
    config: Config, tmp_path: Path
) -> None:
    """--create: new leads take a create's rules (a type, both names, what the type needs
    and refuses, the contact forms, one person once), rows with an id an update's. Both
    paths agree on edge rows, in a CSV and a workbook; on mostly valid rows only the
    invalid ones are left to the row-by-row path."""
    edge = _create_rows(700, seed=4, edges=True)
    header = _CREATE_HEADERS
    for src in (
        write_csv(tmp_path / "create.csv", [header, *edge]),
        write_xlsx(tmp_path / "create.xlsx", [header, *edge]),
    ):
        assert assert_same(src, config, tmp_path) == len(edge)
        codes = {p.code for r in leadsync.mapped_rows(src, config) for p in r.problems}
        assert {"person_duplicate", "not_for_type", "invalid_email", "required"} <= codes
    plain = _create_rows(2000, seed=5, edges=False)
    src = write_csv(tmp_path / "plain.csv", [header, *plain])
    assert assert_same(src, config, tmp_path) == len(plain)
    rows = list(leadsync.mapped_rows(src, config, fast=False))
    invalid = sum(1 for r in rows if r.problems)
    created = sum(1 for r in rows if r.lead_id is None and not r.problems and not r.blank)
    assert created > 1000 and left_to_row_by_row(src, config) <= invalid


def test_cells_with_spaces_round_them_are_cleared_in_bulk_as_trimmed(tmp_path: Path) -> None:
    """A text cell with spaces round it (" Lee ", a no-break space) is its trimmed text,
    and a cell of spaces is blank, on both paths; such rows went row by row before."""
    header = ["id", "first_name", "last_name", "address", "questionnaire: Budget?", "status"]
    rows = [
        [str(1000 + i), [" Ann", "Bo ", "\u00a0Cy\u00a0", "Di"][i % 4],
         ["Lee ", "  Khan", "Smith"][i % 3], ["1 High St ", " ", "2 Mill Ln"][i % 3],
         ["£250k ", "   ", "ASAP"][i % 3], [" New", "Contacted", " #N/A "][i % 3]]
        for i in range(300)
    ]  # fmt: skip
    config = Config(chunk_rows=70, statuses=("New", "Contacted"))
    for src in (
        write_csv(tmp_path / "trim.csv", [header, *rows]),
        write_xlsx(tmp_path / "trim.xlsx", [header, *rows]),
    ):
        assert assert_same(src, config, tmp_path) == 300
        mapped = list(leadsync.mapped_rows(src, config))
        assert mapped[0].payload["first_name"] == "Ann" and "address" not in mapped[1].payload
        invalid = [r for r in mapped if r.problems]  # the " #N/A " status: an Excel error
        assert len(invalid) == 100 and {p.code for r in invalid for p in r.problems} == {
            "excel_error"
        }
        assert left_to_row_by_row(src, config) == len(invalid)


def test_rows_lacking_only_a_name_get_the_reference_problems_column_by_column(
    tmp_path: Path,
) -> None:
    """A file without a last-name column (and rows with a blank first name): every row
    is invalid, and those whose only fault is a missing name are not mapped row by row,
    yet say exactly what the reference says."""
    from leadsync.mapper import map_columns, plan_columns
    from leadsync.reader import open_table
    from leadsync.validator import check_columns, names_missing_only

    rows = [r[:2] + r[3:] for r in generated_rows(300, seed=8)]
    for k, row in enumerate(rows):
        if k % 3 == 0:
            row[1] = ""
    header = HEADERS[:2] + HEADERS[3:]
    src = write_csv(tmp_path / "nolast.csv", [header, *rows])
    config = Config(chunk_rows=97)
    assert assert_same(src, config, tmp_path) == len(rows)
    table = open_table(src)
    plan = plan_columns(table.headers, config)
    unnamed = 0
    for chunk in table.chunks(config.chunk_rows):
        columns = map_columns(chunk, plan, config, {})
        cleared = check_columns(columns, plan, config)
        assert not cleared.any()  # no row has a last name
        unnamed += int(names_missing_only(columns, plan, config, cleared).sum())
    assert unnamed > 100
