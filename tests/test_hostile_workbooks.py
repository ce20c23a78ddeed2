"""Hostile workbooks (issue 21, D1-D3): a file that would make python-calamine take more
memory than leadsync's limit is refused before calamine loads it, whatever the writer
left out (no ``<dimension>``), repeated (ods) or shared (a string in 100,000 cells).
Each runs as a real process whose peak memory the kernel measures: calamine aborts the
process on an allocation it cannot make, so a refusal must come first."""

from __future__ import annotations

import io
import re
import time
import zipfile
from pathlib import Path
from typing import Any

from leadsync.reader.extent import (
    MAX_SCANNED_PART,
    MAX_SHEET_BYTES,
    Extent,
    _scanned_xlsx,
    xlsx_extent,
)
from leadsync.reader.odsxml import scan_ods
from tests.conftest import run_measured, write_xlsx

HEADER = ["id", "first_name", "last_name"]


def _rewrite(src: Path, dst: Path, part: str, edit: Any) -> Path:
    """A copy of the workbook ``src`` with one XML part edited as bytes."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for item in z.infolist():
            data = z.read(item)
            out.writestr(item.filename, edit(data) if item.filename == part else data)
    return dst


def _stray_cell(data: bytes) -> bytes:
    return data.replace(
        b"</sheetData>",
        b'<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>',
    )


def _ods(path: Path, rows: str) -> Path:
    """A minimal real ods: a header row, then ``rows`` (table-row XML)."""
    cell = '<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>'
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        '<office:body><office:spreadsheet><table:table table:name="Leads">'
        '<table:table-column table:number-columns-repeated="1024"/>'
        f"<table:table-row>{''.join(cell.format(h) for h in HEADER)}</table:table-row>"
        f"{rows}</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        z.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        z.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return path


def _validate(src: Path, tmp_path: Path) -> tuple[Any, int]:
    return run_measured("validate", src, "--report-dir", tmp_path / "o")


def test_d1_a_stray_cell_at_xfd1048576_is_refused_before_calamine_loads_it(
    tmp_path: Path,
) -> None:
    """openpyxl writes the stray cell into the sheet's <dimension>."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADER)
    sheet.append([1, "A", "B"])
    sheet["XFD1048576"] = "x"
    book.save(tmp_path / "stray.xlsx")
    proc, peak = _validate(tmp_path / "stray.xlsx", tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert (
        "spans 1,048,576 rows x 16,384 columns (17,179,869,184 cells): reading it would take "
        "about 2,048.0 GB of memory, over leadsync's limit of 1 GB for a sheet"
    ) in proc.stderr
    assert peak < 300


def test_d1_a_sheet_without_a_dimension_is_measured_from_its_cells(tmp_path: Path) -> None:
    """The same stray cell in a sheet with no <dimension> (some writers leave it out):
    calamine aborted (exit 134) after the dimension check let it through."""
    plain = write_xlsx(tmp_path / "plain.xlsx", [HEADER, [1, "A", "B"]], sheet="Sheet1")
    src = _rewrite(
        plain,
        tmp_path / "nodim.xlsx",
        "xl/worksheets/sheet1.xml",
        lambda d: _stray_cell(re.sub(rb"<dimension[^>]*/>", b"", d)),
    )
    proc, peak = _validate(src, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "spans 1,048,576 rows x 16,384 columns" in proc.stderr
    assert "Traceback" not in proc.stderr and peak < 300


def test_a_dimension_that_overstates_the_data_is_checked_against_the_cells(
    tmp_path: Path,
) -> None:
    """A <dimension> over the limit (A1:XFD1048576) over three real rows: the cells say the
    sheet is small, and it is read."""
    plain = write_xlsx(tmp_path / "plain.xlsx", [HEADER, [1, "A", "B"]], sheet="Sheet1")
    src = _rewrite(
        plain,
        tmp_path / "wide-dim.xlsx",
        "xl/worksheets/sheet1.xml",
        lambda d: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"', d),
    )
    proc, _ = _validate(src, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 rows" in proc.stdout or "1 row" in proc.stdout


def test_a_string_shared_by_many_cells_is_counted_once_per_cell(tmp_path: Path) -> None:
    """A 1.3 MB workbook whose one 10,000-character string fills 200,000 cells: calamine
    copies it into each, 2 GB (it took 6.5 GB and ran past two minutes here)."""
    import xlsxwriter

    src = tmp_path / "shared.xlsx"
    book = xlsxwriter.Workbook(str(src))
    sheet = book.add_worksheet("Leads")
    sheet.write_row(0, 0, HEADER)
    long = "y" * 10_000
    for r in range(1, 100_001):
        sheet.write_row(r, 0, [r, long, long])
    book.close()
    assert src.stat().st_size < 2 << 20
    started = time.monotonic()
    proc, peak = _validate(src, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "repeats its shared text into so many cells that reading it would take about" in (
        proc.stderr
    )
    assert peak < 300 and time.monotonic() - started < 30


def test_an_ods_that_repeats_one_cell_ten_million_times_is_refused(tmp_path: Path) -> None:
    """A 1 KB ods: one row of 100 cells, repeated 100,000 times. calamine expands it: it
    took 1.3 GB here (calamine refuses 100 million cells itself, but not 10 million)."""
    src = _ods(
        tmp_path / "repeat.ods",
        '<table:table-row table:number-rows-repeated="100000">'
        '<table:table-cell office:value-type="string" table:number-columns-repeated="100">'
        "<text:p>x</text:p></table:table-cell></table:table-row>",
    )
    assert src.stat().st_size < 4096
    proc, peak = _validate(src, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "sheet 'Leads' of repeat.ods spans 100,001 rows x 100 columns" in proc.stderr
    assert peak < 300


def test_an_ods_padded_as_libreoffice_pads_it_is_read(tmp_path: Path) -> None:
    """LibreOffice ends every sheet with a million empty rows and each row with ~1,000
    empty cells, written as repeats: they hold nothing and must not count."""
    data = "".join(
        f'<table:table-row><table:table-cell office:value-type="float" office:value="{1000 + i}">'
        f"<text:p>{1000 + i}</text:p></table:table-cell>"
        f'<table:table-cell office:value-type="string"><text:p>F{i}</text:p></table:table-cell>'
        f'<table:table-cell office:value-type="string"><text:p>L{i}</text:p></table:table-cell>'
        '<table:table-cell table:number-columns-repeated="1021"/></table:table-row>'
        for i in range(2)
    )
    pad = (
        '<table:table-row table:number-rows-repeated="1048573">'
        '<table:table-cell table:number-columns-repeated="1024"/></table:table-row>'
    )
    src = _ods(tmp_path / "padded.ods", data + pad)
    proc, peak = _validate(src, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 rows" in proc.stdout and peak < 300


def test_the_cell_scan_follows_calamines_positions() -> None:
    """Unit: cells without ``r`` follow the one before; rows without ``r`` the row before;
    empty (self-closing) cells move the position and hold nothing."""
    xml = (
        b'<sheetData><row r="2"><c r="B2"><v>1</v></c><c><v>2</v></c><c s="1"/></row>'
        b'<row><c><v>3</v></c></row><row r="9"><c r="E9" s="3"/></row></sheetData>'
    )
    assert _scanned_xlsx(io.BytesIO(xml)) == Extent(rows=2, columns=3)  # A2:C3
    ods = (
        b'<table:table table:name="A&amp;B"><table:table-row table:number-rows-repeated="3">'
        b'<table:table-cell table:number-columns-repeated="4"/>'
        b'<table:table-cell office:value-type="float" office:value="1"/></table:table-row>'
        b"</table:table>"
    )
    assert scan_ods(io.BytesIO(ods)).extents == {"A&B": Extent(rows=3, columns=5)}
    assert Extent(rows=8_000_000, columns=1).bytes <= MAX_SHEET_BYTES


def test_a_large_sheet_without_a_dimension_is_not_scanned(tmp_path: Path) -> None:
    """Past MAX_SCANNED_PART of XML the scan would cost as much as calamine's read: the
    extent is unknown (None), and the sheet goes to calamine as it is."""
    rows = b"".join(
        b'<row r="%d"><c r="A%d"><v>%d</v></c><c r="B%d" t="inlineStr"><is><t>%s</t></is></c></row>'
        % (i, i, i, i, b"x" * 40)
        for i in range(1, 120_001)
    )
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("sheet.xml", b"<worksheet><sheetData>" + rows + b"</sheetData></worksheet>")
    with zipfile.ZipFile(path) as z:
        assert z.getinfo("sheet.xml").file_size > MAX_SCANNED_PART
        assert xlsx_extent(z, "sheet.xml") is None


def test_d2_a_zip_bomb_workbook_is_refused_before_it_is_unpacked(tmp_path: Path, cli: Any) -> None:
    """A real workbook whose sheet XML is padded with 200 MB of spaces (~200 KB packed)."""
    import zipfile

    from tests.conftest import write_xlsx

    plain = write_xlsx(tmp_path / "plain.xlsx", [["id", "first_name", "last_name"], [1, "A", "B"]])
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"</worksheet>", b" " * (200 << 20) + b"</worksheet>")
            out.writestr(item.filename, data)
    assert bomb.stat().st_size < 2 << 20
    started = time.monotonic()
    result = cli("validate", bomb, "--report-dir", tmp_path / "o")
    assert result.exit_code == 2
    assert "xl/worksheets/sheet1.xml unpacks" in result.stderr and "refused" in result.stderr
    assert time.monotonic() - started < 10


def test_d3_an_error_cell_that_never_closes_is_scanned_in_linear_time() -> None:
    import io

    from leadsync.reader.sheetxml import SheetScan, _scan_part

    def scan(megabytes: int) -> float:
        xml = b'<sheetData><row r="2"><c r="A2" t="e"><v>' + b"x" * (megabytes << 20)
        started = time.perf_counter()
        assert _scan_part(io.BytesIO(xml), SheetScan(), True, block_size=1 << 20) == {}
        return time.perf_counter() - started

    small, large = scan(16), scan(64)
    assert large < 5  # it was 3.3 s at 64 MB, 39.7 s at 256 MB (quadratic)
    assert large < 8 * small + 0.5  # 4x the bytes: about 4x the time, not 16x
