"""Reader: real CSV bytes and real workbooks in, text or typed cells with row numbers out."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadsync.errors import InputError
from leadsync.reader import Shown, column_letter, open_table, sniff_delimiter
from tests.conftest import write_csv, write_xlsx


def all_rows(path: Path, sheet: str | None = None, size: int = 1000) -> list[tuple[int, list[Any]]]:
    table = open_table(path, sheet)
    out = []
    for chunk in table.chunks(size):
        for number, cells in zip(
            chunk.row_numbers, chunk.frame.itertuples(index=False, name=None), strict=True
        ):
            out.append((number, list(cells)))
    return out


def _ids_read_alike(tmp_path: Path, path: Path, columns: str) -> Any:
    """The id column's single pass reads what the rows read (ids 1 and 2); the config of
    a mapping with these ``[columns]`` lines."""
    import leadsync

    assert [list(b.to_pylist()) for b in open_table(path).column_text(0, 100)] == [["1", "2"]]
    mapping = tmp_path / "m.toml"
    mapping.write_text(f"[columns]\n{columns}\n")
    return leadsync.load_mapping(mapping)


def test_blank_lines_above_a_csv_header_are_rows_excel_shows(tmp_path: Path) -> None:
    """An export that starts with empty lines: the header is the first record with a value
    (as in a workbook), and every row keeps the number Excel shows it at."""
    import leadsync

    path = tmp_path / "a.csv"
    path.write_bytes(b'\r\n,,\r\n"Lead\nid",first_name,last_name\r\n1,Ann,Lee\r\n2,Bo,Ray\r\n')
    table = open_table(path)
    assert (table.headers, table.header_row) == (("Lead\nid", "first_name", "last_name"), 3)
    assert all_rows(path) == [(4, ["1", "Ann", "Lee"]), (5, ["2", "Bo", "Ray"])]
    config = _ids_read_alike(tmp_path, path, '"Lead\\nid" = "id"')
    for fast in (True, False):
        rows = list(leadsync.mapped_rows(path, config, fast=fast))
        assert [(r.row, r.lead_id) for r in rows] == [(4, "1"), (5, "2")]
    result = leadsync.validate(path, config, report_dir=tmp_path / "r")
    assert result.summary["outcomes"]["valid"] == 2
    with (tmp_path / "r" / "successes.csv").open(encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    assert [line[0] for line in lines[1:]] == ["4", "5"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_a_header_cell_with_a_line_break_is_one_header_row(tmp_path: Path, encoding: str) -> None:
    """Excel's Alt+Enter in a header ("Lead\\nRef"): the fast reader skipped one line of
    the header, read its second line as a data row and numbered every row one too high."""
    import leadsync

    path = write_csv(
        tmp_path / "a.csv",
        [
            ["Lead\nid", "first_name", "last_name\n(family)"],
            ["1", "Ann", "Lee"],
            ["2", "Bo", "Ray"],
        ],
        encoding=encoding,
    )
    assert open_table(path).headers == ("Lead\nid", "first_name", "last_name\n(family)")
    assert all_rows(path) == [(2, ["1", "Ann", "Lee"]), (3, ["2", "Bo", "Ray"])]
    config = _ids_read_alike(
        tmp_path, path, '"Lead\\nid" = "id"\n"last_name\\n(family)" = "last_name"'
    )
    for fast in (True, False):
        rows = list(leadsync.mapped_rows(path, config, fast=fast))
        assert [(r.row, r.lead_id, r.payload, r.problems) for r in rows] == [
            (2, "1", {"first_name": "Ann", "last_name": "Lee"}, []),
            (3, "2", {"first_name": "Bo", "last_name": "Ray"}, []),
        ]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
def test_csv_encodings_round_trip_text(tmp_path: Path, encoding: str) -> None:
    path = write_csv(
        tmp_path / "a.csv", [["id", "first_name"], ["007", "Zoë £"]], encoding=encoding
    )
    table = open_table(path)
    assert table.headers == ("id", "first_name")  # no BOM left on the first header
    assert all_rows(path) == [(2, ["007", "Zoë £"])]


def test_cp1252_detected_when_bytes_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("id,last_name\r\n1,Brontë – “quoted”\r\n".encode("cp1252"))
    assert open_table(path).encoding == "cp1252"
    assert all_rows(path) == [(2, ["1", "Brontë – “quoted”"])]


MB = 1 << 20  # the encoding check reads 1 MB at a time


@pytest.mark.parametrize(
    ("tail", "encoding"),
    [
        ("3,Zoë\r\n".encode(), "utf-8"),  # ë's two bytes either side of 1 MB
        ("3,€😀\r\n".encode(), "utf-8"),  # three- and four-byte characters across it
    ],
    ids=["two-byte", "three-and-four-byte"],
)
def test_the_whole_file_decides_the_encoding_whatever_the_block_boundaries(
    tmp_path: Path, tail: bytes, encoding: str
) -> None:
    head = b"id,first_name\r\n" + b"1,Ann\r\n" * (MB // 8)
    first_high = next(i for i, b in enumerate(tail) if b >= 0x80)
    straddled = 0
    for back in range(1, 4):  # the first non-ASCII byte at MB - back
        pad = MB - back - first_high - len(head) - 4
        body = head + b"2," + b"a" * pad + b"\r\n" + tail
        assert body[MB - back] >= 0x80
        straddled += 0x80 <= body[MB] < 0xC0  # a character cut by the block boundary
        path = tmp_path / f"{back}.csv"
        path.write_bytes(body)
        assert open_table(path).encoding == encoding, back
    assert straddled >= 1


def test_utf8_then_cp1252_one_mb_later_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Two encodings in one file: reading it either way would send garbled names (D5)."""
    from leadsync.errors import InputError

    body = b"id,first_name\r\n1,Zo\xc3\xab\r\n" + b"2,Ann\r\n" * (MB // 7)
    path = tmp_path / "mixed.csv"
    path.write_bytes(body + "3,Brontë\r\n".encode("cp1252"))
    lines = body.count(b"\n") + 1
    with pytest.raises(InputError) as caught:
        open_table(path)
    assert str(caught.value).startswith(f"mixed.csv is UTF-8 text but line {lines} is not")


def test_a_cp1252_byte_ending_the_first_block_is_cp1252_not_mixed(tmp_path: Path) -> None:
    """0xEB (ë) as the last byte of a 1 MB block looks like the start of a UTF-8
    character that the next block must finish: it does not, and the file is cp1252."""
    head = b"id,first_name\r\n"
    body = head + b"2," + b"a" * (MB - len(head) - 3) + "ë\r\n3,Brontë\r\n".encode("cp1252")
    assert body[MB - 1] == 0xEB
    path = tmp_path / "edge.csv"
    path.write_bytes(body)
    assert open_table(path).encoding == "cp1252"


def test_a_utf8_character_cut_short_by_the_end_of_the_file_means_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv"
    path.write_bytes("id,first_name\r\n1,Zoë".encode()[:-1])
    assert open_table(path).encoding == "cp1252"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    rows = [["id", "first_name", "address"], ["1", "Ann", "1, High St"], ["2", "Bob", "2; Low Rd"]]
    path = write_csv(tmp_path / "a.txt", rows, delimiter=delimiter)
    table = open_table(path)
    assert table.delimiter == delimiter
    assert [r[1] for r in all_rows(path)] == rows[1:]


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_excels_sep_line_names_the_delimiter_and_is_not_a_row(tmp_path: Path, bom: bytes) -> None:
    """``sep=;`` alone on the first line: Excel splits the cells at ``;`` and does not
    show the line (the header is row 1); it was read as the header, and the file refused."""
    import leadsync

    path = tmp_path / "a.csv"
    path.write_bytes(
        bom + 'sep=;\r\nid;first_name;address\r\n1;Zoë;"1, High St\nBath"\r\n2;Bo;x\r\n'.encode()
    )
    table = open_table(path)
    assert (table.delimiter, table.headers, table.header_row) == (
        ";",
        ("id", "first_name", "address"),
        1,
    )
    assert all_rows(path) == [(2, ["1", "Zoë", "1, High St\nBath"]), (3, ["2", "Bo", "x"])]
    for fast in (True, False):
        rows = list(leadsync.mapped_rows(path, fast=fast))
        assert [(r.row, r.lead_id, r.payload.get("first_name")) for r in rows] == [
            (2, "1", "Zoë"),
            (3, "2", "Bo"),
        ]
    assert sniff_delimiter("sep=|\na,b,c\n", ".tsv") == "|"
    assert sniff_delimiter("sep=;x\na,b,c\n1,2,3\n", ".csv") == ","  # not a sep line


def test_tsv_suffix_means_tab() -> None:
    assert sniff_delimiter("a,b\tc\n", ".tsv") == "\t"


def test_values_stay_text_never_floats(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv", [["id", "office_id", "postcode"], ["00375", "375", "0123"]]
    )
    assert all_rows(path) == [(2, ["00375", "375", "0123"])]


def test_row_numbers_count_records_with_embedded_newlines_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'id,address\r\n1,"line one\r\nline two"\r\n\r\n3,x\n4,y\r\n')
    rows = all_rows(path)
    assert [n for n, _ in rows] == [2, 3, 4, 5]
    assert rows[0][1] == ["1", "line one\r\nline two"]
    assert rows[1][1] == ["", ""]  # the blank line is a row the user sees, kept blank


def test_ragged_rows_are_padded_and_extra_cells_counted(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,first_name\n1\n2,Ann,surplus,more\n3,Bob,,\n", encoding="utf-8")
    chunk = next(open_table(path).chunks(10))
    assert chunk.frame.values.tolist() == [["1", ""], ["2", "Ann"], ["3", "Bob"]]
    assert chunk.extra_cells == {1: 2}  # trailing empty cells (row 3) are not extra


def test_chunks_are_lazy_and_sized(tmp_path: Path) -> None:
    rows = [["id", "first_name"]] + [[str(i), f"n{i}"] for i in range(25)]
    path = write_csv(tmp_path / "a.csv", rows)
    chunks = list(open_table(path).chunks(10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert list(chunks[2].row_numbers) == [22, 23, 24, 25, 26]


def test_xlsx_typed_cells_are_normalised(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "a.xlsx",
        [
            ["id", "office_id", "when", "at", "gdpr", "ratio", "code"],
            [1001, 375, dt.date(2025, 7, 12), dt.datetime(2025, 7, 12, 14, 30), True, 375.5, "007"],
            [None, 375.0, None, None, False, None, None],
        ],
    )
    rows = all_rows(path)
    assert rows[0] == (
        2,
        [1001, 375, "2025-07-12", "2025-07-12 14:30:00", True, 375.5, "007"],
    )
    # a date cell is read as it shows under its format (openpyxl's yyyy-mm-dd and
    # yyyy-mm-dd h:mm:ss), keeping its value
    when, at = rows[0][1][2:4]
    assert (type(when), when.value) == (Shown, dt.date(2025, 7, 12))
    assert (type(at), at.value) == (Shown, dt.datetime(2025, 7, 12, 14, 30))
    assert type(rows[0][1][0]) is int and type(rows[0][1][1]) is int
    assert rows[1] == (3, ["", 375, "", "", False, "", ""])
    assert type(rows[1][1][1]) is int


def test_first_visible_sheet_is_default_and_sheet_can_be_chosen(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "a.xlsx",
        [["id", "first_name"], [5, "Ann"]],
        sheet="Export",
        before=[("Old", "hidden")],
    )
    table = open_table(path)
    assert table.sheet == "Export"
    assert open_table(path, "old").sheet == "Old"  # names match in any case
    assert open_table(path, "1").sheet == "Old"  # or by position
    with pytest.raises(
        InputError, match=r"no sheet named 'Nope' in a.xlsx; its sheets are: Old, Export"
    ):
        open_table(path, "Nope")


def test_sheet_not_starting_at_a1_keeps_excel_row_numbers(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    assert ws is not None
    ws["B3"], ws["C3"] = "id", "first_name"
    ws["B4"], ws["C4"] = 7, "Ann"
    path = tmp_path / "offset.xlsx"
    book.save(path)
    table = open_table(path)
    assert table.header_row == 3 and table.first_column == 1
    assert all_rows(path) == [(4, [7, "Ann"])]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "file not found: "),
        ("empty.csv", b"", "empty.csv is empty: expected a header row, then one row per lead"),
        ("blank.csv", b"\r\n\r\n", "blank.csv is empty"),
        ("empty.xlsx", b"", "empty.xlsx is empty (0 bytes): save or export the workbook again"),
        (
            "broken.xlsx",
            b"PK\x03\x04 this is not really a zip",
            "broken.xlsx is not a readable Excel workbook",
        ),
        (
            "picture.xlsx",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "picture.xlsx is not a readable Excel workbook",
        ),
        ("data.pdf", b"%PDF-1.4\x00\x01\x02", "unsupported file type '.pdf' for data.pdf"),
    ],
)
def test_unreadable_files_raise_one_clear_input_error(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        open_table(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_xlsx_name_with_csv_content_is_read_as_csv_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    path.write_text("id,first_name\n1,Ann\n", encoding="utf-8")
    table = open_table(path)
    assert table.format == "csv"
    assert table.notices == ["export.xlsx is text, not a workbook: read it as CSV"]


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


def test_blank_inner_headers_get_a_name_and_trailing_ones_are_dropped(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv", [["id", "", "first_name", "", ""], ["1", "x", "Ann", "", ""]]
    )
    assert open_table(path).headers == ("id", "(column B)", "first_name")


def test_formula_scan_trusts_files_saved_by_excel(tmp_path: Path) -> None:
    import re
    import zipfile

    from openpyxl import Workbook

    from leadsync.reader import scan_sheets

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["id", "status"])
    sheet.append([1, "=1+1"])
    written = tmp_path / "openpyxl.xlsx"
    book.save(written)
    assert scan_sheets(written).uncached == 1
    # the same file as if Excel had saved it: Excel always stores results, so no scan
    excel = tmp_path / "excel.xlsx"
    with zipfile.ZipFile(written) as zi, zipfile.ZipFile(excel, "w") as zo:
        for item in zi.infolist():
            data = zi.read(item.filename)
            if item.filename == "docProps/app.xml":
                data = re.sub(
                    rb"<Application>[^<]*</Application>",
                    b"<Application>Microsoft Excel</Application>",
                    data,
                )
            zo.writestr(item, data)
    assert scan_sheets(excel).uncached == 0


def _errors_workbook(path: Path) -> Path:
    """A workbook with error cells (as Excel stores them: t="e"), a sheet that starts at
    B3, and a second sheet with errors elsewhere."""
    from openpyxl import Workbook

    def error(ws: Any, ref: str, text: str) -> None:
        ws[ref].value = text
        ws[ref].data_type = "e"

    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.title = "Leads"
    for r, row in enumerate([["id", "first_name", "office_id"], [1, "Ann", 1213]], start=3):
        for c, value in enumerate(row, start=2):
            ws.cell(r, c, value)
    ws.cell(5, 2, 2)
    error(ws, "C5", "#N/A")
    error(ws, "D5", "#DIV/0!")
    ws.cell(6, 2, 3)
    ws.cell(6, 3, "=A1+1")  # a formula without a saved result: blank, and a notice
    other = book.create_sheet("More")
    other.append(["id", "first_name", "last_name"])
    other.append([4, "Bo", "Day"])
    error(other, "B3", "#REF!")
    other["A3"], other["C3"] = 5, "Eve"
    book.save(path)
    return path


def test_error_cells_read_as_the_text_excel_shows(tmp_path: Path) -> None:
    path = _errors_workbook(tmp_path / "errors.xlsx")
    assert all_rows(path) == [(4, [1, "Ann", 1213]), (5, [2, "#N/A", "#DIV/0!"]), (6, [3, "", ""])]
    assert all_rows(path, "More") == [(2, [4, "Bo", "Day"]), (3, [5, "#REF!", "Eve"])]
    assert any("1 formula cell(s) with no saved result" in n for n in open_table(path).notices)


def test_error_cells_are_invalid_never_blank(tmp_path: Path) -> None:
    import leadsync
    from leadsync.config import Config
    from tests.conftest import read_csv_report

    path = _errors_workbook(tmp_path / "errors.xlsx")
    result = leadsync.validate(path, Config(sheet="More"), tmp_path / "o")
    [problem] = read_csv_report(tmp_path / "o" / "failures.csv")
    assert (problem["row"], problem["field"], problem["code"], problem["message"]) == (
        "3",
        "first_name",
        "excel_error",
        "the cell shows the Excel error #REF!: fix the formula behind it, or clear the cell",
    )
    assert result.summary["outcomes"]["valid"] == 1


@settings(max_examples=60, deadline=None)
@given(block_size=st.integers(1, 700))
def test_error_scan_finds_every_cell_whatever_the_block_size(block_size: int) -> None:
    from leadsync.reader.sheetxml import SheetScan, _scan_part

    xml = _scan_xml()
    whole, cut = SheetScan(), SheetScan()
    expected = _scan_part(io.BytesIO(xml), whole, True)
    assert len(expected) == 60 and whole.uncached == 30
    assert _scan_part(io.BytesIO(xml), cut, True, block_size) == expected
    assert cut.uncached == whole.uncached


@functools.cache
def _scan_xml() -> bytes:
    """A real sheet's XML: 60 error cells, 30 formulas without a saved result."""
    import zipfile

    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    assert ws is not None
    for r in range(1, 121):
        ws.append([r, f"name {r}", "=A1*2" if r % 4 == 0 else "x", ""])
        if r % 2:
            ws.cell(r, 4).value, ws.cell(r, 4).data_type = ("#N/A", "#NAME?")[r % 4 == 1], "e"
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as z:
        return z.read("xl/worksheets/sheet1.xml")
