"""What a nightly job meets in the wild: odd files get one clear line or per-row outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from openpyxl import Workbook

import leadsync
from tests.conftest import read_csv_report, write_csv

Cli = Callable[..., Result]


def summary(cli: Cli, src: Path, out: Path, *extra: str) -> tuple[Result, dict]:  # type: ignore[type-arg]
    result = cli("validate", src, "--report-dir", out, "--json", *extra)
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else {})


def test_nul_bytes_mixed_line_endings_and_a_1mb_cell(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "odd.csv"
    src.write_bytes(
        b"id,first_name,last_name\r\n1,A\x00nn,Lee\n2,Bob,Ray\r3,Cy,Lo\r\n4,"
        + b"x" * 1_000_000
        + b",Z\r\n"
    )
    result, s = summary(cli, src, tmp_path / "o")
    assert result.exit_code == 1
    assert s["rows"] == 4 and s["outcomes"]["valid"] == 2  # every row read, none lost
    assert s["problems_by_code"] == {"control_character": 1, "too_long": 1}


def test_all_blank_rows_and_unknown_columns(cli: Cli, tmp_path: Path) -> None:
    rows = (
        [["id", "first_name", "last_name", "Colour"]]
        + [["", "", "", ""]] * 5
        + [["1", "A", "B", "red"]]
    )
    result, s = summary(cli, write_csv(tmp_path / "a.csv", rows), tmp_path / "o")
    assert result.exit_code == 0
    assert s["outcomes"]["skipped_blank"] == 5 and s["unmapped_columns"] == ["Colour"]


def test_ten_thousand_columns(cli: Cli, tmp_path: Path) -> None:
    header = ["id", "first_name", "last_name"] + [f"extra {i}" for i in range(10_000)]
    row = ["1", "A", "B"] + ["x"] * 10_000
    result, s = summary(cli, write_csv(tmp_path / "wide.csv", [header, row]), tmp_path / "o")
    assert result.exit_code == 0 and len(s["unmapped_columns"]) == 10_000


def test_duplicate_headers_that_map_to_one_field(cli: Cli, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [["id", "Status", "status"], ["1", "New", "Lost"]])
    result = cli("validate", src)
    assert result.exit_code == 2
    assert result.stderr == (
        "leadsync: error: columns 'Status' (B) and 'status' (C) both map to "
        'status: rename one, or put "column C" = "ignore" under [columns] in a mapping '
        "file\n"
    )


def test_merged_cells_read_as_their_top_left_value(cli: Cli, tmp_path: Path) -> None:
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.append(["id", "first_name", "last_name", "status"])
    ws.append([1, "Ann", "Lee", "Contacted"])
    ws.append([2, "Bob", "Ray", None])
    ws.merge_cells("D2:D3")  # a merged status: only D2 holds the value
    src = tmp_path / "merged.xlsx"
    book.save(src)
    result, _ = summary(cli, src, tmp_path / "o")
    assert result.exit_code == 0
    ok = {r["row"]: r for r in read_csv_report(tmp_path / "o" / "successes.csv")}
    assert "status" in ok["2"]["fields_sent"].split(",")
    assert "status" not in ok["3"]["fields_sent"].split(",")  # blank: left unchanged
    payloads = {r.row: r.payload for r in leadsync.mapped_rows(src)}
    assert payloads[2]["status"] == "Contacted" and "status" not in payloads[3]


def test_hostile_cells_reach_reports_neutralised(cli: Cli, tmp_path: Path) -> None:
    rows = [
        ["id", "first_name", "last_name", "status"],
        ["../1", '=HYPERLINK("http://x")', "+1", "@SUM(A1)"],
        ["１２", "\x07bell", "-2", "ok"],
    ]
    result, _ = summary(cli, write_csv(tmp_path / "a.csv", rows), tmp_path / "o")
    assert result.exit_code == 1
    fails = read_csv_report(tmp_path / "o" / "failures.csv")
    assert {r["code"] for r in fails} == {"id_invalid", "control_character"}
    first = fails[0]
    assert (
        first["first_name"].startswith("'=")
        and first["last_name"] == "'+1"
        and first["status"] == "'@SUM(A1)"
    )


def test_password_protected_workbook(cli: Cli, tmp_path: Path) -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = tmp_path / "plain.xlsx"
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["id", "first_name", "last_name"])
    book.save(plain)
    locked = tmp_path / "locked.xlsx"
    with plain.open("rb") as src, locked.open("wb") as out:
        OOXMLFile(src).encrypt("secret", out)
    result = cli("validate", locked)
    assert result.exit_code == 2
    assert (
        result.stderr
        == "leadsync: error: locked.xlsx is password-protected: save a copy without a password\n"
    )


def test_formula_cells_without_a_saved_result_are_reported(cli: Cli, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["id", "first_name", "last_name", "status"])
    sheet.append([1, "Ann", "Lee", '=CONCAT("Con", "tacted")'])  # openpyxl saves no result
    sheet.append([2, "Bob", "Ray", "New"])
    src = tmp_path / "formulas.xlsx"
    book.save(src)
    result, s = summary(cli, src, tmp_path / "o")
    assert result.exit_code == 0 and s["outcomes"]["valid"] == 2
    assert result.stderr == (
        "leadsync: note: formulas.xlsx has 1 formula cell(s) with no saved result (written by a "
        "program that does not calculate): they were read as blank. Open the file in Excel and "
        "save it to store the results\n"
    )
    assert s["notices"] == [result.stderr.removeprefix("leadsync: note: ").rstrip("\n")]


def test_a_report_dir_that_cannot_be_made_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [["id", "first_name", "last_name"], ["1", "A", "B"]])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("validate", src, "--report-dir", blocker / "reports")
    assert result.exit_code == 2
    assert result.stderr == (
        f"leadsync: error: cannot write the reports to {blocker / 'reports'}: Not a directory "
        "(choose another --report-dir)\n"
    )


def test_a_full_disk_is_said_plainly_not_called_a_bug(cli: Cli) -> None:
    # /dev/full answers every write with ENOSPC, as a full disk does
    for fmt in ("csv", "xlsx"):
        result = cli("template", "--format", fmt, "-o", "/dev/full", "--force")
        assert result.exit_code == 3
        assert result.stderr == "leadsync: error: cannot go on: No space left on device\n"


def test_a_title_above_the_header_is_pointed_out(cli: Cli, tmp_path: Path) -> None:
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.append(["Leads export, 1 July 2025"])
    ws.append([])
    ws.append(["Lead ID", "First Name", "Last Name"])
    ws.append([1001, "Ann", "Lee"])
    book.save(tmp_path / "title.xlsx")
    # a title line has no delimiter: the sniffer must still find the commas below it
    rows = [["Export of 1 July"], ["id", "first_name", "last_name"], ["1001", "A", "B"]]
    write_csv(tmp_path / "title.csv", rows)
    for name, row in (("title.xlsx", 3), ("title.csv", 2)):
        result = cli("validate", tmp_path / name, "--report-dir", tmp_path / "o")
        assert result.exit_code == 2
        assert result.stderr == (
            f"leadsync: error: no lead id column in row 1, the header row; row {row} looks "
            "like the header: delete the rows above it\n"
        )
