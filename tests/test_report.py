"""Reports: the four files, their permissions, neutralised cells, the marked workbook."""

from __future__ import annotations

import datetime as dt
import json
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

import leadsync
from leadsync.config import Config
from leadsync.csvsafe import neutralise
from leadsync.model import RED, MappedRow, Problem
from leadsync.xlsx_report import SheetSpec, XlsxReport
from tests.conftest import read_csv_report, write_csv, write_xlsx


def summary_notes(book: Any) -> list[Any]:
    """The first column of report.xlsx's Summary sheet."""
    return [r[0].value for r in book["Summary"].iter_rows()]


def test_neutralise() -> None:
    assert [neutralise(s) for s in ["=1+1", "+44 7700", "-3", "@SUM(A1)", "plain", ""]] == [
        "'=1+1",
        "'+44 7700",
        "'-3",
        "'@SUM(A1)",
        "plain",
        "",
    ]


def test_report_xlsx_marks_exactly_the_invalid_cells(tmp_path: Path) -> None:
    src = write_xlsx(
        tmp_path / "leads.xlsx",
        [
            ["id", "first_name", "last_name", "office_id", "next_action_date", "Notes"],
            [1, "Ann", "Lee", 1213, dt.date(2025, 7, 12), "fine"],
            [2, "B" * 51, "Lee", 12.5, "31/02/2025", '=HYPERLINK("x")'],
            [None, None, None, None, None, None],
            [None, "Cy", "Lee", 1213, None, None],
        ],
    )
    book = load_workbook(src)
    book["Leads"]["F3"].data_type = "s"  # text that looks like a formula, as Excel keeps it
    book.save(src)
    result = leadsync.validate(src, report_dir=tmp_path / "out")
    assert result.exit_code == 1
    book = load_workbook(tmp_path / "out" / "report.xlsx")
    assert book.sheetnames == ["Leads", "Summary"]
    ws = book["Leads"]
    header = [c.value for c in ws[1]]
    assert header == [  # leadsync's outcome first, where a user sees it
        "leadsync outcome",
        "leadsync problems",
        "id",
        "first_name",
        "last_name",
        "office_id",
        "next_action_date",
        "Notes",
    ]
    marked = {
        (c.row, c.column_letter): c.comment.text
        for row in ws.iter_rows()
        for c in row
        if c.comment is not None
    }
    red = {
        (c.row, c.column_letter)
        for row in ws.iter_rows()
        for c in row
        if str(c.fill.fgColor.rgb).endswith("FFC7CE") and c.column_letter > "B"
    }
    assert set(marked) == red == {(3, "D"), (3, "F"), (3, "G"), (5, "C")}
    assert marked[(3, "D")] == "first_name has 51 characters; at most 50 allowed"
    assert marked[(3, "F")] == "12.5 is not a whole number"
    assert "'31/02/2025' is not a real date" in marked[(3, "G")]
    assert "lead id is blank" in marked[(5, "C")]
    outcomes = [ws.cell(row=r, column=1).value for r in range(2, 6)]
    assert outcomes == ["valid", "invalid", "skipped_blank", "invalid"]
    # usable as a to-do list: a filter on the header; the header, leadsync's columns and
    # the id frozen; the columns as wide as their texts (8-40 characters; problems 80)
    assert ws.auto_filter.ref == "A1:H5" and ws.freeze_panes == "D2"
    width = {c: ws.column_dimensions[c].width for c in "ABCDG"}
    assert width["A"] >= len("skipped_blank") + 2  # leadsync outcome
    assert width["B"] > 40  # leadsync problems
    assert 8 <= width["C"] < 9  # "id", 1, 2: the least
    assert 40 <= width["D"] < 41  # 51 characters of "B": the most
    assert width["G"] >= len("next_action_date") + 2
    # the user's own values come back typed, and text never turns into a formula
    assert ws["G2"].value == dt.datetime(2025, 7, 12)
    assert ws["H3"].value == '=HYPERLINK("x")' and ws["H3"].data_type == "s"
    summary = {r[0].value: r[1].value for r in book["Summary"].iter_rows() if len(r) > 1}
    assert summary["valid"] == 1 and summary["invalid"] == 2 and summary["skipped_blank"] == 1


def test_reports_are_private_and_csv_cells_neutralised(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        [
            ["id", "first_name", "last_name", "status"],
            ["1", "=cmd|' /C calc'!A0", "Lee", "@risk"],
            ["2", "", "Lee", "-1"],
        ],
    )
    leadsync.validate(src, report_dir=tmp_path / "out")
    out = tmp_path / "out"
    for name in ("failures.csv", "successes.csv", "summary.json", "report.xlsx"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    [ok] = read_csv_report(out / "successes.csv")
    assert ok["first_name"] == "'=cmd|' /C calc'!A0" and ok["status"] == "'@risk"
    [row] = [r for r in leadsync.mapped_rows(src) if not r.problems]
    assert row.payload["first_name"] == "=cmd|' /C calc'!A0"  # sent as is
    assert ok["fields_sent"] == "first_name,last_name,status"
    [bad] = read_csv_report(out / "failures.csv")
    assert bad["status"] == "'-1"


def test_failures_csv_has_one_line_per_problem(tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "in.csv",
        [
            ["id", "first_name", "last_name", "office_id"],
            ["7", "A" * 60, "", "x"],
        ],
    )
    leadsync.validate(src, report_dir=tmp_path / "out")
    lines = read_csv_report(tmp_path / "out" / "failures.csv")
    assert [
        (r["row"], r["lead_id"], r["outcome"], r["stage"], r["field"], r["code"]) for r in lines
    ] == [
        ("2", "7", "invalid", "map", "office_id", "not_a_number"),
        ("2", "7", "invalid", "validate", "first_name", "too_long"),
        ("2", "7", "invalid", "validate", "last_name", "required"),
    ]
    assert list(lines[0])[:8] == [
        "row",
        "lead_id",
        "outcome",
        "stage",
        "field",
        "code",
        "message",
        "http_status",
    ]
    assert lines[0]["first_name"] == "A" * 60  # the original columns follow


def test_summary_counts_every_row_once(tmp_path: Path) -> None:
    rows = [["id", "first_name", "last_name"]] + [[str(i), "A", "B"] for i in range(1, 40)]
    rows[5] = ["", "", ""]
    rows[9] = ["9x/", "A", "B"]
    src = write_csv(tmp_path / "in.csv", rows)
    result = leadsync.validate(src, report_dir=tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == result.summary
    assert summary["rows"] == 39 == sum(summary["outcomes"].values())
    assert {k: v for k, v in summary["outcomes"].items() if v} == {
        "valid": 37,
        "invalid": 1,
        "skipped_blank": 1,
    }
    assert summary["problems_by_code"] == {"id_invalid": 1}
    assert len(summary["file"]["sha256"]) == 64


def test_large_file_report_xlsx_keeps_only_rows_needing_attention(tmp_path: Path) -> None:
    rows = [["id", "first_name", "last_name"]] + [[str(i), "A", "B"] for i in range(1, 11)]
    rows[4][2] = "L" * 51
    rows[8] = ["", "", ""]
    src = write_csv(tmp_path / "in.csv", rows)
    leadsync.validate(src, Config(xlsx_full_rows=5), report_dir=tmp_path / "out")
    book = load_workbook(tmp_path / "out" / "report.xlsx")
    values = [[c.value for c in r] for r in book["Leads"].iter_rows()]
    assert values[0] == [
        "row",
        "leadsync outcome",
        "leadsync problems",
        "id",
        "first_name",
        "last_name",
    ]
    assert values[1:] == [
        [
            5,
            "invalid",
            "last_name: last_name has 51 characters; at most 50 allowed",
            "4",
            "A",
            "L" * 51,
        ]
    ]
    assert book["Leads"]["F2"].comment is not None
    notes = summary_notes(book)
    assert any(str(n).startswith("This file is large") for n in notes)


def test_comments_stop_after_the_first_thousand_bad_rows_and_the_summary_says_so(
    tmp_path: Path,
) -> None:
    from leadsync.defaults import XLSX_COMMENT_ROWS

    bad = XLSX_COMMENT_ROWS + 3
    rows = [["id", "first_name", "last_name", "office_id"]]
    rows += [[str(i), "Ann", "Lee", "12.5" if i <= bad else "1213"] for i in range(1, bad + 3)]
    result = leadsync.validate(write_csv(tmp_path / "a.csv", rows), report_dir=tmp_path / "o")
    assert result.summary["outcomes"] == {**result.summary["outcomes"], "invalid": bad}
    book = load_workbook(tmp_path / "o" / "report.xlsx")
    ws = book["Leads"]
    red = "FFFFC7CE"
    last_commented, first_bare = XLSX_COMMENT_ROWS + 1, XLSX_COMMENT_ROWS + 2  # sheet rows
    assert ws[f"F{last_commented}"].comment is not None
    assert ws[f"F{first_bare}"].comment is None
    assert ws[f"F{first_bare}"].fill.fgColor.rgb == red  # still red
    assert ws[f"B{first_bare}"].value.startswith("office_id: ")  # the problem, spelt out
    assert sum(1 for row in ws.iter_rows() for c in row if c.comment is not None) == (
        XLSX_COMMENT_ROWS
    )
    notes = summary_notes(book)
    assert (
        "Bad cells are red on every row; those of the first 1,000 rows also have a comment "
        "(3 more rows: see their 'leadsync problems' column)."
    ) in notes


def test_a_report_xlsx_process_started_early_is_used_or_let_go(tmp_path: Path) -> None:
    """A run on a big file starts the report.xlsx process before its id scan."""
    from leadsync.reader import open_table
    from leadsync.report import ReportWriter, spawn_xlsx_worker

    rows = [["id", "first_name", "last_name"], ["1", "Ann", ""]]
    table = open_table(write_csv(tmp_path / "a.csv", rows))
    unused = spawn_xlsx_worker()
    small = ReportWriter(tmp_path / "small", table, total_rows=1, xlsx_process=unused)
    assert unused.returncode == 0  # let go at once: a small report is written in-process
    small.write(MappedRow(row=2, lead_id="1", payload={}), "invalid", ["1", "Ann", ""])
    small.close({})
    assert load_workbook(tmp_path / "small" / "report.xlsx")["Leads"]["C2"].value == "1"

    used = spawn_xlsx_worker()
    big = ReportWriter(tmp_path / "big", table, total_rows=5_000, xlsx_process=used)
    big.write(MappedRow(row=2, lead_id="1", payload={}), "invalid", ["1", "Ann", ""])
    big.close({})
    assert used.returncode == 0  # it wrote the report and finished
    ws = load_workbook(tmp_path / "big" / "report.xlsx")["Leads"]
    # full copy: the row in its place, after leadsync's outcome and problems
    assert [c.value for c in ws[2]][:4] == ["invalid", None, "1", "Ann"]


def test_a_report_xlsx_process_that_fails_says_why(tmp_path: Path) -> None:
    from leadsync.report import _XlsxProcess
    from leadsync.xlsx_report import SheetSpec as _SheetSpec

    sheet = _SheetSpec(("id", "first_name"), None, 1)
    writer = _XlsxProcess(tmp_path / "no-such-folder" / "report.xlsx", sheet, full=False)
    with pytest.raises(OSError) as failed:
        for i in range(2_000):  # enough to fill the pipe if nothing read it
            writer.write(i + 2, ["1", "Ann"], "invalid", ())
        writer.close({})
    assert str(failed.value).startswith("could not write report.xlsx: FileNotFoundError")
    assert writer.process.returncode != 0


def test_a_large_report_xlsx_is_written_by_a_second_process(tmp_path: Path) -> None:
    """From ~2,000 rows report.xlsx is written by a child process: same workbook."""
    from leadsync.report import _XLSX_PROCESS_ROWS

    rows = [["id", "first_name", "last_name", "office_id"]]
    rows += [[str(i), "Ann", "Lee", "12.5" if i % 500 == 0 else "1213"] for i in range(1, 2501)]
    src = write_csv(tmp_path / "big.csv", rows)
    assert len(rows) - 1 >= _XLSX_PROCESS_ROWS
    result = leadsync.validate(src, report_dir=tmp_path / "out")
    assert result.summary["outcomes"]["invalid"] == 5
    path = tmp_path / "out" / "report.xlsx"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ws = load_workbook(path)["Leads"]
    assert ws.max_row == 2501  # every row in place (full copy)
    assert ws["F501"].comment is not None and "12.5" in ws["F501"].comment.text
    assert ws["A501"].value == "invalid" and ws["A2"].value == "valid"


@pytest.mark.parametrize("where", ["in-process", "second process"])
def test_a_large_report_xlsx_stops_at_its_attention_limit_and_says_so(
    tmp_path: Path, where: str
) -> None:
    from leadsync.model import Problem
    from leadsync.report import _XlsxProcess
    from leadsync.xlsx_report import SheetSpec as _SheetSpec
    from leadsync.xlsx_report import XlsxReport as _XlsxReport

    sheet = _SheetSpec(("id", "first_name"), "Leads", 1, attention_rows=3)
    path = tmp_path / "report.xlsx"
    writer = (
        _XlsxReport(path, sheet, full=False)
        if where == "in-process"
        else _XlsxProcess(path, sheet, full=False)
    )
    for number in range(2, 7):  # five rows that need attention
        bad = Problem(row=number, code="required", message="needed", column_index=1)
        writer.write(number, (str(number), ""), "invalid", [bad])
    writer.write(7, ("7", "Ann"), "valid", [])
    writer.close({"rows": 6})
    book = load_workbook(path)
    assert [r[0].value for r in book["Leads"].iter_rows(min_row=2)] == [2, 3, 4]
    notes = summary_notes(book)
    assert (
        "Only the first 3 rows that need attention are on the first sheet; "
        "2 more are in failures.csv."
    ) in notes


def test_validate_keeps_every_bad_row_in_the_csv_past_the_workbook_limit(tmp_path: Path) -> None:
    rows = [["id", "first_name", "last_name"]] + [[str(i), "", "B"] for i in range(1, 9)]
    src = write_csv(tmp_path / "in.csv", rows)
    config = Config(xlsx_full_rows=5, xlsx_attention_rows=2)
    leadsync.validate(src, config, report_dir=tmp_path / "out")
    assert len(read_csv_report(tmp_path / "out" / "failures.csv")) == 8
    sheet = load_workbook(tmp_path / "out" / "report.xlsx")["Leads"]
    assert [r[0].value for r in sheet.iter_rows(min_row=2)] == [2, 3]


def test_a_report_xlsx_fed_back_in_sends_only_the_users_columns(tmp_path: Path) -> None:
    """A user fixes the red cells in report.xlsx and runs it as the next input: leadsync's
    own columns are not data (and not listed as columns not sent)."""
    src = write_csv(tmp_path / "in.csv", [["id", "first_name", "last_name"], ["1", "Ann", ""]])
    leadsync.validate(src, report_dir=tmp_path / "first")
    again = leadsync.validate(tmp_path / "first" / "report.xlsx", report_dir=tmp_path / "again")
    assert again.summary["unmapped_columns"] == []
    [row] = list(leadsync.mapped_rows(tmp_path / "first" / "report.xlsx"))
    assert row.lead_id == "1" and row.payload == {"first_name": "Ann"}


class _CellByCell(XlsxReport):
    """report.xlsx written through XlsxWriter's call per cell only: the oracle."""

    direct = False


# texts XlsxWriter changes as it writes them, and the plain ones it does not
_AWKWARD = [
    "plain",
    " lead ",
    " leading",
    "a&b<c>d",
    "Smith & Sons",
    "x\x01y\x1f",
    "_x0041_ literal",
    "\ufffe\uffff",
    "tab\t",
    "line\nbreak\r\n",
    "Zoë 🏠 café",
    "=1+1",
    "",
    "é" * 16_383,
]
_TOO_LONG_HERE = "x" * 17_000  # may pass Excel's limit: XlsxWriter's own call writes it


@pytest.mark.parametrize("full", [True, False])
def test_report_xlsx_rows_written_directly_are_xlsxwriters_own_bytes(
    tmp_path: Path, full: bool
) -> None:
    headers = tuple(f"col {j}" for j in range(len(_AWKWARD) + 3))
    spec = SheetSpec(headers=headers, sheet="Leads", header_row=1)
    rows: list[tuple[int, tuple[Any, ...], str, list[Problem]]] = []
    for r in range(2, 40):
        # one awkward text a row, among plain ones (a row of plain texts is written in
        # one go), and a row of them all
        cells: list[Any] = [f"text {r}.{j}" for j in range(len(_AWKWARD))]
        cells[r % len(cells)] = _AWKWARD[r % len(_AWKWARD)]
        if r == 3:
            cells = list(_AWKWARD)
        cells += [r * 1001, None, "" if r % 2 else "end"]
        if r % 11 == 0:
            cells[2] = _TOO_LONG_HERE
        if r % 4 == 0:  # a workbook's typed cells
            cells[-3:] = [1.5, dt.date(2025, 7, 12), r % 8 == 0]
        if r % 5 == 0:
            cells[-3:] = [dt.datetime(2025, 7, 12, 10, 30, tzinfo=dt.UTC), dt.time(9, 15), -(2**60)]
        bad = (
            [
                Problem(
                    row=r,
                    code="too_long",
                    message=f"bad {r}",
                    field="x",
                    column="col 1",
                    column_index=1,
                )
            ]
            if r % 3
            else []
        )
        if bad and r % 4 == 0:  # a bad date cell, red: still shown as a date
            bad.append(Problem(row=r, code="x", message="bad date", column_index=len(cells) - 2))
        outcome = "invalid" if bad else "valid"
        rows.append((r + (r // 10 if full else 0), tuple(cells), outcome, bad))
    written = {}
    direct_rows = 0
    for kind in (XlsxReport, _CellByCell):
        path = tmp_path / f"{kind.__name__}.xlsx"
        report = kind(path, spec, full=full)
        for number, cells, outcome, bad in rows:
            report.write(number, cells, outcome, bad)
        report.close({"command": "validate", "rows": len(rows)})
        direct_rows += report.direct_rows
        with zipfile.ZipFile(path) as book:
            written[kind] = {
                name: book.read(name) for name in book.namelist() if name != "docProps/core.xml"
            }
    # every row but the too-long ones went directly
    assert direct_rows == sum(
        1
        for _, cells, outcome, _ in rows
        if _TOO_LONG_HERE not in cells and (full or outcome == "invalid")
    )
    direct, oracle = written[XlsxReport], written[_CellByCell]
    assert direct.keys() == oracle.keys()
    for name in oracle:
        assert direct[name] == oracle[name], name
    # ... and the bytes hold what the user wrote
    sheet = load_workbook(tmp_path / "XlsxReport.xlsx")["Leads"]
    first = rows[0]
    at = first[0] if full else 2
    lead = 2 if full else 3
    # (openpyxl shows XlsxWriter's _xHHHH_ escapes of control characters as written)
    shown = [sheet.cell(at, lead + 1 + j).value for j in range(len(first[1]))]
    expected = [None if v == "" else v for v in first[1]]
    readable = [j for j, v in enumerate(first[1]) if not re.search("[\x00-\x1f\ufffe_]", str(v))]
    assert len(readable) > 8
    assert [shown[j] for j in readable] == [expected[j] for j in readable]
    assert sheet.cell(at, lead + 2).fill.fgColor.rgb.endswith(RED)
    red_date = next(
        (number if full else k + 2, cells)
        for k, (number, cells, outcome, bad) in enumerate(r for r in rows if full or r[3])
        if isinstance(cells[-2], dt.date) and len(bad) == 2
    )
    cell = sheet.cell(red_date[0], lead + len(red_date[1]) - 1)
    assert cell.value == dt.datetime(2025, 7, 12)
    assert (cell.number_format, cell.fill.fgColor.rgb[-6:]) == ("yyyy-mm-dd", RED)


@pytest.mark.parametrize("full", [True, False])
def test_report_xlsx_rows_given_as_a_csv_chunk_s_columns_are_xlsxwriters_own_bytes(
    tmp_path: Path, full: bool
) -> None:
    """A CSV chunk's rows reach report.xlsx as pyarrow columns, in batches: the bytes are
    those of XlsxWriter's call per cell, row by row."""
    import pyarrow as pa

    from leadsync.xlsx_rows import SheetRows

    headers = tuple(f"col {j}" for j in range(len(_AWKWARD)))
    spec = SheetSpec(headers=headers, sheet="Leads", header_row=1)
    rows = []
    for r in range(2, 60):
        cells = [f"text {r}.{j}" if (r + j) % 7 else "" for j in range(len(_AWKWARD))]
        cells[r % len(cells)] = _AWKWARD[r % len(_AWKWARD)]
        if r == 17:
            cells[4] = _TOO_LONG_HERE
        bad = [Problem(row=r, code="x", message=f"bad <{r}>", column="col 2", column_index=2)]
        rows.append((r, cells, "invalid" if r % 3 else "valid", bad if r % 3 else []))
    if not full:
        rows = [row for row in rows if row[2] == "invalid"]
    oracle = _CellByCell(tmp_path / "oracle.xlsx", spec, full=full)
    for number, cells, outcome, bad in rows:
        oracle.write(number, tuple(cells), outcome, bad)
    oracle.close({"rows": len(rows)})
    direct = XlsxReport(tmp_path / "direct.xlsx", spec, full=full)
    for part in (rows[:20], rows[20:]):
        columns = [pa.array([cells[j] for _, cells, _, _ in part]) for j in range(len(headers))]
        direct.write_rows(
            SheetRows([r[0] for r in part], [r[2] for r in part], [r[3] for r in part], columns)
        )
    direct.close({"rows": len(rows)})
    assert direct.direct_rows == len(rows) - 1  # all but the row with a too-long text
    books = {}
    for name in ("oracle", "direct"):
        with zipfile.ZipFile(tmp_path / f"{name}.xlsx") as book:
            books[name] = {n: book.read(n) for n in book.namelist() if n != "docProps/core.xml"}
    assert books["direct"] == books["oracle"]


def test_report_xlsx_keeps_a_text_that_looks_like_xlsxwriter_markup(tmp_path: Path) -> None:
    # XlsxWriter's own call writes "<r>...</r>" as rich-string XML: the cell shows nothing
    spec = SheetSpec(headers=("id", "note"), sheet="Leads", header_row=1)
    shown = {}
    for kind in (XlsxReport, _CellByCell):
        path = tmp_path / f"{kind.__name__}.xlsx"
        report = kind(path, spec, full=True)
        report.write(2, ("1", "<r>Lee</r>"), "valid", [])
        report.close({})
        shown[kind] = load_workbook(path)["Leads"]["D2"].value
    assert shown == {XlsxReport: "<r>Lee</r>", _CellByCell: ""}


def test_a_duration_cell_reads_as_it_shows_in_every_report(tmp_path: Path) -> None:
    """A [h]:mm:ss cell (calamine: a timedelta) is 30:00:00 in the payload, the CSVs and
    report.xlsx, not Python's "1 day, 6:00:00"."""
    src = write_xlsx(
        tmp_path / "in.xlsx",
        [
            ["id", "first_name", "last_name", "meta: call"],
            [1001, "Ann", "Lee", dt.timedelta(hours=30)],
            [1002, "B" * 51, "Ray", dt.timedelta(minutes=5, seconds=30)],
        ],
        number_formats={"D2": "[h]:mm:ss", "D3": "[h]:mm:ss"},
    )
    leadsync.validate(src, report_dir=tmp_path / "o")
    [ok] = read_csv_report(tmp_path / "o" / "successes.csv")
    [bad] = read_csv_report(tmp_path / "o" / "failures.csv")
    assert (ok["meta: call"], bad["meta: call"]) == ("30:00:00", "0:05:30")
    assert [r.payload["meta"] for r in leadsync.mapped_rows(src)] == [
        {"call": "30:00:00"},
        {"call": "0:05:30"},
    ]
    ws = load_workbook(tmp_path / "o" / "report.xlsx")["Leads"]
    header = [c.value for c in ws[1]]
    column = header.index("meta: call") + 1
    assert [ws.cell(row=r, column=column).value for r in (2, 3)] == ["30:00:00", "0:05:30"]
