"""What Excel shows is what is sent (issue 15): number formats, midnight date-times and
error cells, in every workbook format, from files LibreOffice wrote (committed beside
tests/fixtures/make_libreoffice.py, which wrote them) and files openpyxl wrote."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import leadsync
from leadsync.reader.numfmt import kind, render
from tests.conftest import write_xlsx

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "libreoffice"


def _rows(path: Path, fast: bool = True) -> dict[int, tuple[dict[str, Any], list[tuple[str, Any]]]]:
    return {
        r.row: (r.payload, sorted((str(p.code), p.field) for p in r.problems))
        for r in leadsync.mapped_rows(path, fast=fast)
    }


def test_libreoffices_xlsx_ods_xls_and_csv_give_the_same_payloads() -> None:
    """LibreOffice saved one sheet four ways; its CSV holds what each cell shows, as
    Excel's "Save as CSV" does. Every format must send the same thing."""
    csv = _rows(FIXTURES / "leads.csv")
    for name in ("leads.xlsx", "leads.ods", "leads.xls"):
        for fast in (True, False):
            assert _rows(FIXTURES / name, fast) == csv, (name, fast)


def test_a_header_cell_reads_as_it_shows(tmp_path: Path) -> None:
    """A date or a formatted number in the header row is the header the sheet shows (a
    mapping names it so, as in the sheet's CSV): it was read as 2025-07-01 and 7."""
    from leadsync.reader import open_table

    src = write_xlsx(
        tmp_path / "h.xlsx",
        [["id", dt.date(2025, 7, 1), 7], [1001, "yes", "no"]],
        number_formats={"B1": "mmmm yyyy", "C1": '"Q"0'},
    )
    assert open_table(src, None).headers == ("id", "July 2025", "Q7")
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\n"July 2025" = "meta: july"\n"Q7" = "meta: q7"\n')
    [row] = list(leadsync.mapped_rows(src, leadsync.load_mapping(mapping)))
    assert row.payload == {"meta": {"july": "yes", "q7": "no"}}


def test_a_binary_workbook_is_read_and_says_what_it_cannot_show() -> None:
    """An .xlsb (calamine's test file) is read, with a notice: its formats and error cells
    are not seen, so what it sends may differ from what Excel shows."""
    from leadsync.reader import open_table

    table = open_table(FIXTURES.parent / "calamine" / "date.xlsb", None)
    assert table.headers == ("2021-01-01", "15")  # a date cell as calamine reads it
    [notice] = table.notices
    assert "date.xlsb is a binary workbook (.xlsb)" in notice and "Save it as .xlsx" in notice


def test_a_strict_iso_workbook_sends_what_its_csv_sends(tmp_path: Path) -> None:
    """An ISO 29500 Strict workbook (calamine's test file; its relationships in another
    namespace) has its number formats applied: its cells were sent unformatted, 2190 for
    a cell that shows 2190.00."""
    from leadsync.reader import open_table

    here = FIXTURES.parent / "calamine"  # each column sent as a meta value

    names = open_table(here / "strict_iso_paths.xlsx", None).headers
    mapping = tmp_path / "m.toml"
    lines = ['"Item" = "id"', *(f'"{h}" = "meta: {h}"' for h in names[1:])]
    mapping.write_text("[columns]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    config = leadsync.load_mapping(mapping)
    sheet = [r.payload for r in leadsync.mapped_rows(here / "strict_iso_paths.xlsx", config)]
    csv = [r.payload for r in leadsync.mapped_rows(here / "strict_iso_paths.csv", config)]
    assert sheet == csv
    assert sheet[0]["meta"]["FlatBox X"] == "2190.00"


def test_what_each_formatted_cell_sends() -> None:
    rows = _rows(FIXTURES / "leads.ods")
    payload, problems = rows[2]
    assert problems == []
    assert payload["postcode"] == "00007"  # 7 under 00000
    assert payload["questionnaire"] == [["Budget?", "£350,000"]]  # 350000 under "£"#,##0
    # 0.5 under 0%; a duration of 30 hours under [h]:mm:ss (calamine reads it as an ods's
    # PT30H00M00S, a workbook's timedelta: it was sent as "1 day, 6:00:00")
    assert payload["meta"] == {"share": "50%", "call": "30:00:00"}
    assert payload["address"] == "07700 900123"  # a phone-style format
    assert payload["office_id"] == 1213  # a numeric field keeps its number (shown 1,213)
    # 12/07/2025 00:00 under dd/mm/yyyy hh:mm: a date-time (London is UTC+1 in July)
    assert payload["next_action_date"] == "2025-07-11T23:00:00Z"
    assert rows[3][0]["meta"] == {"share": "0.33", "call": "0:05:30"}  # 0.333... under 0.00
    # date cells in a text field: as they show (the date field above takes the date)
    assert [rows[r][0]["utm_content"] for r in (2, 3, 4, 5)] == [
        "12/07/2025",
        "12/07/2025 14:30",
        "1 August 2025",
        "Sat 2 Aug 2025 9:05 AM",
    ]


@pytest.mark.parametrize("name", ["leads.xlsx", "leads.ods", "leads.xls"])
def test_error_cells_are_errors_in_every_format(name: str) -> None:
    """=NA() in a text field, =1/0 in a numeric one: ods and xls read them as blank
    before, so the field was silently left out."""
    rows = _rows(FIXTURES / name)
    assert rows[4][1] == [("excel_error", "status")]
    assert rows[5][1] == [("excel_error", "office_id")]


def test_openpyxl_number_formats_and_a_format_that_cannot_be_shown(tmp_path: Path) -> None:
    src = write_xlsx(
        tmp_path / "f.xlsx",
        [
            ["id", "first_name", "last_name", "postcode", "status", "next_action_date"],
            [1001, "Ann", "Lee", 7, 1.5, dt.datetime(2025, 1, 3)],
        ],
        number_formats={"D2": "00000", "E2": "# ?/?", "F2": "yyyy-mm-dd hh:mm"},
    )
    result = leadsync.validate(src, report_dir=tmp_path / "o")
    [row] = list(leadsync.mapped_rows(src))
    assert row.payload["postcode"] == "00007"
    assert row.payload["status"] == "1.5"  # a fraction format: its plain number, and said
    assert row.payload["next_action_date"] == "2025-01-03T00:00:00Z"  # GMT in January
    notices = result.summary["notices"]
    assert any("'# ?/?' (first: E2)" in n and "plain number" in n for n in notices), notices


def test_date_cells_in_text_fields_send_what_they_show(tmp_path: Path) -> None:
    """A date cell in a question, a meta value or an address is sent as the sheet shows
    it (as Excel's "Save as CSV" writes it), fast path and row by row alike; the date
    field takes the date; report.xlsx keeps the cell a date."""
    from openpyxl import load_workbook

    cells = {
        "dd/mm/yyyy": (dt.date(2025, 7, 12), "12/07/2025"),
        "mm-dd-yy": (dt.date(2025, 7, 12), "12/07/2025"),  # built-in 14: en-GB's short date
        "d mmmm yyyy": (dt.date(2025, 7, 12), "12 July 2025"),
        "[$-809]dd mmm yyyy;@": (dt.date(2025, 7, 12), "12 Jul 2025"),
        "dd/mm/yyyy hh:mm": (dt.datetime(2025, 7, 12, 14, 30), "12/07/2025 14:30"),
        "dd/mm/yy h:mm AM/PM": (dt.datetime(2025, 7, 12, 9, 5), "12/07/25 9:05 AM"),
        "yyyy-mm-dd": (dt.date(2025, 7, 12), "2025-07-12"),
    }
    header = ["id", "first_name", "last_name", "questionnaire: Move by?", "meta: seen"]
    header.append("next_action_date")
    rows: list[list[Any]] = [header]
    formats = {}
    for r, (code, (value, _)) in enumerate(cells.items(), start=2):
        rows.append([1000 + r, "Ann", "Lee", value, value, value])
        formats.update({f"D{r}": code, f"E{r}": code, f"F{r}": code})
    src = write_xlsx(tmp_path / "dates.xlsx", rows, number_formats=formats)
    for fast in (True, False):
        got = list(leadsync.mapped_rows(src, fast=fast))
        assert [r.payload["questionnaire"][0][1] for r in got] == [s for _, s in cells.values()]
        assert [r.payload["meta"]["seen"] for r in got] == [s for _, s in cells.values()]
        # the date field: the date (a date-time in UTC: London is UTC+1 in July)
        sent = [r.payload["next_action_date"] for r in got]
        assert sent[:4] == ["2025-07-12"] * 4
        assert sent[4:6] == ["2025-07-12T13:30:00Z", "2025-07-12T08:05:00Z"]
    leadsync.validate(src, report_dir=tmp_path / "r")
    sheet = load_workbook(tmp_path / "r" / "report.xlsx")["Leads"]
    assert sheet["F2"].value == dt.datetime(2025, 7, 12)  # a date cell, not a text
    assert sheet["F6"].value == dt.datetime(2025, 7, 12, 14, 30)


@pytest.mark.parametrize("piece_bytes", [0, 4096])
def test_excels_short_date_is_shown_month_first_for_a_month_first_mapping(
    tmp_path: Path, piece_bytes: int
) -> None:
    """Excel shows its built-in short date (14) and short date-time (22) in the computer's
    own date style: a mapping whose dates are month-first (``[dates] order = "MDY"``,
    Excel set to English (United States)) sends ``7/12/2025``; by default (en-GB, the
    API's order) ``12/07/2025``. A format of the file's own is shown as it says. Read
    whole and read in pieces alike."""
    from dataclasses import replace

    header = ["id", "first_name", "last_name", "questionnaire: Move by?", "meta: seen"]
    rows: list[list[Any]] = [header]
    formats = {}
    for r in range(2, 400):
        rows.append(
            [1000 + r, "Ann", "Lee", dt.date(2025, 7, 12), dt.datetime(2025, 7, 12, 14, 30)]
        )
        formats.update({f"D{r}": "mm-dd-yy", f"E{r}": "m/d/yy h:mm"})  # built-ins 14, 22
    rows[5][3] = dt.date(2025, 7, 13)
    formats["D6"] = "dd/mm/yyyy"  # the file's own format
    src = write_xlsx(tmp_path / "dates.xlsx", rows, number_formats=formats)
    mapping = tmp_path / "us.toml"
    mapping.write_text('[dates]\norder = "MDY"\n')
    shown = {}
    for name, config in (
        ("default", leadsync.Config()),
        ("month first", leadsync.load_mapping(mapping)),
    ):
        config = replace(config, xlsx_piece_bytes=piece_bytes)
        got = list(leadsync.mapped_rows(src, config))
        shown[name] = [(r.payload["questionnaire"][0][1], r.payload["meta"]["seen"]) for r in got]
    assert shown["default"][0] == ("12/07/2025", "12/07/2025 14:30")
    assert shown["month first"][0] == ("7/12/2025", "7/12/2025 14:30")
    assert shown["default"][4][0] == shown["month first"][4][0] == "13/07/2025"
    assert len(shown["month first"]) == 398


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1e20, "1E+20"), (1.5e-10, "1.5E-10"), (0.333333333333333, "0.333333333333333"),
     (12345678901.5, "12345678901.5"), (-1e300, "-1E+300")],
)  # fmt: skip
def test_a_general_number_shows_its_exponent_as_excel_does(value: float, shown: str) -> None:
    """Under General a number cell shows 15 significant digits, an exponent with a
    capital E (Excel's CSV of 1e20 holds 1E+20; LibreOffice's 1E+020) — a plain General
    cell and General within a format with literals alike (one rendering of General)."""
    from leadsync.reader.cells import cell_text
    from leadsync.reader.numfmt import render

    assert cell_text(value) == shown
    assert render(value, 'General" kg"') == f"{shown} kg"
    assert render(value, "General;(General)") == (f"({shown[1:]})" if value < 0 else shown)


@pytest.mark.parametrize(
    ("value", "code", "shown"),
    [
        (dt.date(2025, 7, 5), "dd/mm/yyyy", "05/07/2025"),
        (dt.date(2025, 7, 5), "d/m/yy", "5/7/25"),
        (dt.date(2025, 7, 5), "dddd d mmmm yyyy", "Saturday 5 July 2025"),
        (dt.date(2025, 7, 5), "ddd, mmm d", "Sat, Jul 5"),
        (dt.date(2025, 7, 5), "mmmmm-yy", "J-25"),
        (dt.date(2025, 7, 5), "yyyy-mm-dd hh:mm", "2025-07-05 00:00"),
        (dt.datetime(2025, 7, 5, 14, 3, 9), "h:mm:ss AM/PM", "2:03:09 PM"),
        (dt.datetime(2025, 7, 5, 0, 3), "h:mm am/pm", "12:03 AM"),
        (dt.datetime(2025, 7, 5, 14, 3), "hh:mm A/P", "02:03 P"),
        (dt.datetime(2025, 7, 5, 14, 3), "hh:mm a/p", "02:03 p"),
        (dt.datetime(2025, 7, 5, 14, 3, 9), "mm:ss", "03:09"),  # minutes before seconds
        (dt.datetime(2025, 7, 5, 14, 3, 9), 'yyyy-mm-dd"T"hh:mm:ss', "2025-07-05T14:03:09"),
        (dt.datetime(2025, 7, 5, 14, 29, 59, 600000), "hh:mm:ss", "14:30:00"),  # rounded
        (dt.datetime(2025, 7, 5, 14, 29, 59, 640000), "hh:mm:ss.0", "14:29:59.6"),
        (
            dt.datetime(2025, 12, 31, 23, 59, 59, 700000),
            "dd/mm/yyyy hh:mm:ss",
            "01/01/2026 00:00:00",
        ),
        (dt.time(9, 5), "h:mm", "9:05"),
        (dt.time(9, 5), "dd/mm/yyyy", None),  # a time under a date format: Excel's day 0
        (dt.time(6), "[h]:mm", None),  # elapsed hours: not rendered
        (dt.date(2025, 7, 5), "[>45000]dd/mm/yyyy;0", None),  # a condition: not rendered
        (dt.date(2025, 7, 5), "ggg e", None),  # an era: not rendered
    ],
)
def test_render_date(value: Any, code: str, shown: str | None) -> None:
    """Each case is what Excel (English, United Kingdom) displays for it."""
    from leadsync.reader.datefmt import render_date

    assert render_date(value, code) == shown


@pytest.mark.parametrize(
    ("value", "code", "shown"),
    [
        (7, "00000", "00007"),
        (350000, '"£"#,##0', "£350,000"),
        (350000, "[$£-809]#,##0", "£350,000"),
        (0.5, "0%", "50%"),
        (0.1234, "0.0%", "12.3%"),
        (0.333333333333333, "0.00", "0.33"),
        (7700900123, "00000 000000", "07700 900123"),
        (1234.5, "#,##0.00", "1,234.50"),
        (1234, "0,000", "1,234"),
        (-5, "#,##0;(#,##0)", "(5)"),
        (-1234.5, "#,##0.00_);[Red](#,##0.00)", "(1,234.50)"),
        (1234.5, "#,##0.00_);(#,##0.00)", "1,234.50 "),
        (1234567, '#,##0,"k"', "1,235k"),
        (0, '0;-0;"zero"', "zero"),
        (-0.001, "0.00", "0.00"),
        (-0.5, '#,##0,"k"', "0k"),  # a negative that rounds to 0, a literal after it
        (-0.04, '"£"0.0" (est. 2025)"', "£0.0 (est. 2025)"),  # digits in the literal
        (-1500, '#,##0,"k"', "-2k"),
        (2.5, "0", "3"),  # half away from zero, as Excel rounds
        (-2.5, "0", "-3"),
        (8.9, "#.##", "8.9"),
        (0.5, "#.00", ".50"),
        (12, "0.00E+00", "1.20E+01"),
        (1e20, "0.00E+00", "1.00E+20"),  # large, in scientific notation: shown
        (1e20, "#,##0", None),  # 15+ digits in fixed point: digits a float lacks
        (3, '0" bed"', "3 bed"),
        (7, "@", "7"),
        (1, "General_)", "1 "),  # General among literals: the number where it stands
        (-5, 'General" kg"', "-5 kg"),
        (1.5, "# ?/?", None),  # fractions: not rendered
        (5, "[>10]0;0", None),  # conditions: not rendered
        (12, "##0.0E+0", None),  # engineering notation: not rendered
    ],
)
def test_render(value: float, code: str, shown: str | None) -> None:
    """Each case is what Excel and LibreOffice display for it."""
    assert render(value, code) == shown


def test_kind() -> None:
    assert [kind(c) for c in ("General", "0.00", "@", "dd/mm/yyyy", "dd/mm/yyyy hh:mm")] == [
        "general", "number", "text", "date", "datetime",
    ]  # fmt: skip
    assert kind("h:mm") == "time" and kind("[$-809]dd mmmm yyyy") == "date"


def test_an_empty_first_sheet_names_the_sheet_that_has_rows(tmp_path: Path, cli: Any) -> None:
    from openpyxl import Workbook

    book = Workbook()
    first = book.active
    assert first is not None
    first.title = "Notes"
    leads = book.create_sheet("Leads")
    leads.append(["id", "first_name", "last_name"])
    leads.append([1001, "Ann", "Lee"])
    book.save(tmp_path / "two.xlsx")
    result = cli("validate", tmp_path / "two.xlsx", "--report-dir", tmp_path / "o")
    assert result.exit_code == 2
    assert result.stderr == (
        "leadsync: error: sheet 'Notes' of two.xlsx is empty, and sheet 'Leads' has rows: "
        "read it with --sheet 'Leads'\n"
    )


def test_a_sheet_of_error_cells_is_not_called_empty(tmp_path: Path, cli: Any) -> None:
    """calamine reads error cells as blank: the sheet looked empty."""
    import zipfile

    plain = write_xlsx(tmp_path / "plain.xlsx", [["x"]], sheet="Leads")
    src = tmp_path / "errors.xlsx"
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as out:
        for item in z.infolist():
            data = z.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                start, end = data.index(b"<sheetData>"), data.index(b"</sheetData>")
                cells = b'<row r="1"><c r="A1" t="e"><v>#REF!</v></c><c r="B1" t="e"><v>#N/A</v></c></row>'
                data = data[: start + 11] + cells + data[end:]
            out.writestr(item.filename, data)
    result = cli("validate", src, "--report-dir", tmp_path / "o")
    assert result.exit_code == 2
    assert result.stderr == (
        "leadsync: error: sheet 'Leads' of errors.xlsx shows only error cells (#REF! in A1, "
        "...): fix the formulas behind them\n"
    )


def test_the_styled_cell_scan_finds_every_cell_whatever_the_block_size() -> None:
    """Cells cut by a block boundary are found once, and only once."""
    import io

    from leadsync.reader.sheetxml import SheetScan, _scan_part

    xml = (
        b"<sheetData>"
        + b"".join(
            b'<row r="%d"><c r="A%d" s="1"><v>%d</v></c><c r="B%d" s="2"><v>1</v></c>'
            b'<c r="C%d" s="3" t="n"><v>7</v></c></row>' % (r, r, r, r, r)
            for r in range(1, 40)
        )
        + b"</sheetData>"
    )
    styles = {1: "00000", 3: '"£"#,##0'}

    def found(block_size: int) -> dict[int, list[tuple[int, str]]]:
        out: dict[int, list[tuple[int, str]]] = {}
        _scan_part(io.BytesIO(xml), SheetScan(), False, block_size, formats=(styles, out))
        return out

    whole = found(1 << 20)
    assert whole[5] == [(0, "00000"), (2, '"£"#,##0')] and len(whole) == 39
    for block_size in (1, 7, 64, 100, 333):
        assert found(block_size) == whole, block_size


def test_styled_cells_are_found_whatever_their_attributes_order_and_prefix() -> None:
    """A style on a cell counts, whatever comes before its reference (``s`` first, a
    namespace prefix, other attributes); a row's style does not."""
    import io

    from leadsync.reader.sheetxml import SheetScan, _scan_part

    xml = (
        b'<sheetData><row r="1" s="1" customFormat="1"><c r="A1" s="1"><v>1</v></c>'
        b'<c s="1" r="B1"><v>2</v></c><c t="n" s="2"\nr="C1"><v>3</v></c></row>'
        b'<row r="2"><x:c r="AB2" s="2" t="n"><x:v>4</x:v></x:c><c r="D2" s="9"><v>5</v></c>'
        b'<c r="E2"><is><t> s="1" </t></is></c></row></sheetData>'
    )
    out: dict[int, list[tuple[int, str]]] = {}
    _scan_part(io.BytesIO(xml), SheetScan(), False, formats=({1: "00000", 2: "0.0"}, out))
    assert out == {1: [(0, "00000"), (1, "00000"), (2, "0.0")], 2: [(27, "0.0")]}


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"t", b"=", b"'", b"e", b'"', b" ", b"x"]), max_size=80).map(
        b"".join
    ),
    start=st.integers(min_value=0, max_value=90),
    rare_hits=st.sampled_from([0, 1, 3, 4096]),
)
def test_an_error_type_is_found_by_its_quote_as_by_the_whole_needle(
    data: bytes, start: int, rare_hits: int
) -> None:
    """The scan looks for a single-quoted ``t='e'`` by its quote (memchr-fast); it finds
    what a find of the whole needle finds, however many quotes come first."""
    import re

    from leadsync.reader.sheetxml import _occurrences

    for needle in (b"t='e'", b't="e"'):
        want = [m.start() + start for m in re.finditer(re.escape(needle), data[start:])]
        assert list(_occurrences(data, needle, start, rare_hits)) == want


def test_error_cells_in_either_quoting_are_found_among_apostrophes() -> None:
    import io

    from leadsync.reader.sheetxml import SheetScan, _scan_part

    rows = []
    for r in range(1, 60):
        quoted = b"'" if r % 3 else b'"'
        rows.append(
            b'<row r="%d"><c r="A%d" t="inlineStr"><is><t>O\'Brien\'s</t></is></c>'
            b"<c r=%sB%d%s t=%se%s><v>#N/A</v></c></row>"
            % (r, r, quoted, r, quoted, quoted, quoted)
        )
    xml = b"<sheetData>" + b"".join(rows) + b"</sheetData>"
    for block_size in (1 << 20, 64, 333):
        errors = _scan_part(io.BytesIO(xml), SheetScan(), False, block_size)
        assert errors == {r: [(1, "#N/A")] for r in range(1, 60)}, block_size


@pytest.mark.parametrize("name", ["leads.xlsx", "leads.ods", "leads.xls", "formatted"])
def test_a_single_column_pass_reads_each_cell_as_the_rows_do(name: str, tmp_path: Path) -> None:
    """The id scan reads one column of a workbook (only its formats and error cells put
    back); every column must read as the row-by-row pass reads it."""
    from leadsync.reader import open_table
    from leadsync.reader.table import Source

    if name == "formatted":
        rows: list[list[Any]] = [["id", "postcode", "office_id"]]
        rows += [[1000 + i, i % 9, 1213.0 + i % 2] for i in range(40)]
        formats = {f"A{r}": "000000" for r in range(2, 20)} | {"B5": "00000", "C7": "#,##0"}
        path = write_xlsx(tmp_path / "f.xlsx", rows, number_formats=formats)
    else:
        path = FIXTURES / name
    table = open_table(path)
    for index in range(len(table.headers)):
        scanned = [a.to_pylist() for a in table.column_text(index, 7)]
        reference = [a.to_pylist() for a in Source.column_text(table.source, table, index, 7)]
        assert scanned == reference, (name, table.headers[index])
    if name == "formatted":  # the id shown 001001 is lead 1001, as the rows read it
        first = next(iter(table.column_text(0, 100))).to_pylist()
        assert first[:2] == ["1000", "1001"]


def test_a_1904_workbook_s_serials_count_from_1904(tmp_path: Path) -> None:
    """Excel for Mac could save a workbook in the 1904 date system: a date cell that lost
    its format shows a serial 1,462 days smaller. Read as 1900 serials they were four
    years off; calamine converts the date cells themselves by the workbook's system."""
    from openpyxl import Workbook
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    book = Workbook()
    book.epoch = CALENDAR_MAC_1904
    ws = book.active
    assert ws is not None
    ws.append(["id", "first_name", "last_name", "next_action_date"])
    for lead, when in [(1, 44388), (2, 44388.5625), (3, "44388"), (4, dt.date(2025, 7, 12))]:
        ws.append([lead, "Ann", "Lee", when])
    path = tmp_path / "mac.xlsx"
    book.save(path)
    import zipfile

    assert b'date1904="1"' in zipfile.ZipFile(path).read("xl/workbook.xml")
    for fast in (True, False):
        sent = [r.payload["next_action_date"] for r in leadsync.mapped_rows(path, fast=fast)]
        assert sent == ["2025-07-12", "2025-07-12T12:30:00Z", "2025-07-12", "2025-07-12"]
    plain = write_xlsx(
        tmp_path / "pc.xlsx",
        [["id", "first_name", "last_name", "next_action_date"], [1, "A", "B", 45850]],
    )
    assert [r.payload["next_action_date"] for r in leadsync.mapped_rows(plain)] == ["2025-07-12"]


def test_a_1904_xls_s_serials_count_from_1904() -> None:
    """The same in a legacy .xls (xlrd says the date system): written by LibreOffice
    (`soffice --headless --convert-to xls`) from an openpyxl workbook saved in the 1904
    system, with 44388 (a number) and 12 July 2025 (a date cell)."""
    rows = list(leadsync.mapped_rows(FIXTURES / "date1904.xls"))
    assert [r.payload["next_action_date"] for r in rows] == ["2025-07-12", "2025-07-12"]


def test_a_sloppy_xls_keeps_xlrds_warnings_out_of_the_json(tmp_path: Path) -> None:
    """A real .xls with bytes past its last sector (as some exporters pad them): xlrd
    warns about it on stdout by default, which broke ``--json``'s output."""
    src = tmp_path / "padded.xls"
    shutil.copy(FIXTURES / "leads.xls", src)
    with src.open("ab") as fh:
        fh.write(b"\0" * 100)
    out = subprocess.run(
        [sys.executable, "-m", "leadsync", "validate", str(src), "--json",
         "--report-dir", str(tmp_path / "r")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    assert json.loads(out.stdout)["outcomes"]["valid"] >= 1
    assert "WARNING" not in out.stdout + out.stderr


# a format code's characters, and every kind of cell value calamine gives
_FORMAT_CHARS = 'ymdhsaAMPpe/:-. ,"\\_*[]$@;0#?%EbBgG<>=年月日'
_CELL_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.dates(),
    st.datetimes(),
    st.times(),
)


@settings(max_examples=3000, deadline=None)
@given(code=st.text(_FORMAT_CHARS, max_size=16), value=_CELL_VALUES)
@example(code="\\", value=1.0)  # a backslash that escapes nothing
@example(code="0.00", value=1e30)  # more digits than Decimal's default precision
@example(code="0E+00", value=12345.0)  # scientific without a point
@example(code=".#,0", value=5.0)  # grouping with no integer digit
def test_any_format_on_any_cell_is_shown_or_left_as_read(code: str, value: Any) -> None:
    """A workbook may hold any format code: a cell is shown by it or left as calamine
    read it, never an error (a crash here would stop the run on one odd cell)."""
    from leadsync.reader.cells import Shown
    from leadsync.reader.datefmt import formatted

    got = formatted(value, code)
    assert got is value or got.__class__ is Shown or isinstance(got, dt.datetime)
