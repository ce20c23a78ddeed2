"""A large worksheet read in pieces (leadsync.reader.pieces) reads exactly as the sheet
read whole: the same header, rows, chunks, overlays and notices; and a validation that
checks the first pieces while the rest are parsed gives every row the verdict it gets
after a whole id pass (a lead id repeated in a later piece included)."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import leadsync
from leadsync.checks import checked_chunks, prechecked, rows_of
from leadsync.config import Config
from leadsync.reader import open_table
from leadsync.run import open_rows, plan_table, scan_table
from tests.conftest import write_xlsx
from tests.test_fast_path import HEADERS, generated_rows, outcome

PIECE = 4096  # bytes of sheet XML: a few dozen rows a piece
FIXTURES = Path(__file__).parent / "fixtures"


def read(path: Path, piece_bytes: int, parsers: int | None = None) -> dict[str, Any]:
    """Everything a run reads from a workbook."""
    table = open_table(path, None, piece_bytes, parsers)
    # as the rows are used: a sheet read whole gives each row the whole range's width,
    # a piece its own; the blank cells past a row's last are no cells
    rows = [(n, _trimmed(cells)) for n, cells in table.source.rows()]
    chunks = []  # row by row (a piece's rows make chunks of their own)
    for c in table.chunks(97):
        columns = [c.values(i) for i in range(len(table.headers))]
        for k, number in enumerate(c.row_numbers):
            chunks.append((number, [col[k] for col in columns], c.extra_cells.get(k)))
    ids = [a.to_pylist() for a in table.column_text(0, 50)]
    return {
        "pieced": table.pieced,
        "parts": sum(1 for _ in table.parts()),
        "header": (table.headers, table.header_row, table.first_column, table.date1904),
        "rows": rows,
        "chunks": chunks,
        "ids": [i for block in ids for i in block],
        "notices": table.notices,
    }


def _trimmed(cells: list[Any]) -> list[Any]:
    cells = list(cells)
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def assert_reads_alike(path: Path) -> dict[str, Any]:
    """Read whole, and in pieces by one parser and by three at once (in order all the same)."""
    whole = read(path, 0)
    assert not whole["pieced"]
    for parsers in (1, 3):
        pieced = read(path, PIECE, parsers)
        assert pieced["pieced"] and pieced["parts"] > 3
        for key in ("header", "rows", "chunks", "ids", "notices"):
            assert pieced[key] == whole[key], (parsers, key)
    return pieced


def typed_rows(n: int, seed: int) -> list[list[Any]]:
    rows: list[list[Any]] = [list(r) for r in generated_rows(n, seed=seed)]
    rnd = random.Random(seed)
    typed = [375, 375.0, 12.5, True, False, dt.date(2025, 7, 12), dt.datetime(2025, 7, 12, 14, 30)]
    for row in rows:
        for j in (0, 5, 6, 7):
            if rnd.random() < 0.2:
                row[j] = rnd.choice(typed)
    return [
        [c.translate({k: None for k in range(32)}) if isinstance(c, str) else c for c in r]
        for r in rows
    ]


def test_a_sheet_of_typed_formatted_and_error_cells_reads_alike_in_pieces(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.append(HEADERS)
    for i, row in enumerate(typed_rows(1500, seed=7), start=2):
        ws.append(row)
        if i % 97 == 0:
            ws.cell(i, 6).value = "#N/A"  # an error cell (calamine reads it as blank)
        if i % 131 == 0:
            ws.cell(i, 13).value = "=1+1"  # a formula saved without its result
        if i % 5 == 0:
            ws.cell(i, 6).value = 1213
            ws.cell(i, 6).number_format = "#,##0"
        if i % 7 == 0:
            ws.cell(i, 8).value = dt.datetime(2025, 7, 12)
            ws.cell(i, 8).number_format = "dd/mm/yyyy hh:mm"
    path = tmp_path / "typed.xlsx"
    book.save(path)
    got = assert_reads_alike(path)
    assert any("formula cell(s) with no saved result" in n for n in got["notices"])
    assert any("#N/A" in cells for _, cells in got["rows"])
    assert any("1,213" in cells for _, cells in got["rows"])


def test_blank_stretches_and_a_sparse_first_column_read_alike_in_pieces(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    assert ws is not None
    for j, name in enumerate(["notes", *HEADERS], start=2):  # the table starts at column B
        ws.cell(3, j).value = name
    row = 4
    for i, cells in enumerate(typed_rows(1200, seed=3)):
        # column B holds a note only now and then: whole pieces start at column C
        note = "see me" if i % 400 == 0 else None
        for j, value in enumerate([note, *cells], start=2):
            ws.cell(row, j).value = value
        row += 1 if i % 250 else 60  # now and then a stretch of blank rows
    path = tmp_path / "gaps.xlsx"
    book.save(path)
    got = assert_reads_alike(path)
    assert got["header"][1:3] == (3, 1)
    numbers = [n for n, _ in got["rows"]]
    assert numbers == list(range(4, numbers[-1] + 1))  # the blank rows are rows too


def test_shared_strings_and_the_1904_date_system_read_alike_in_pieces(tmp_path: Path) -> None:
    import xlsxwriter

    path = tmp_path / "shared.xlsx"
    book = xlsxwriter.Workbook(str(path), {"date_1904": True})
    ws = book.add_worksheet("Leads")
    when = book.add_format({"num_format": "dd/mm/yyyy"})
    money = book.add_format({"num_format": '"£"#,##0'})
    ws.write_row(0, 0, HEADERS)
    rnd = random.Random(9)
    for r in range(1, 2500):
        ws.write_number(r, 0, 7000 + r)
        ws.write_string(r, 1, rnd.choice(["Olivia", "Zoë", "Rhys"]))
        ws.write_string(r, 2, "Smith")
        ws.write_string(r, 4, rnd.choice(["New", "Contacted"]))
        ws.write_number(r, 5, 1213)
        ws.write_boolean(r, 6, rnd.random() < 0.5)
        ws.write_datetime(r, 7, dt.datetime(2025, 7, 12), when)
        ws.write_number(r, 8, 250000, money)
    book.close()
    got = assert_reads_alike(path)
    assert got["header"][3] is True
    assert got["rows"][0][1][7] == "12/07/2025" and got["rows"][0][1][8] == "£250,000"


def test_parts_named_in_another_case_are_read_as_calamine_reads_them(tmp_path: Path) -> None:
    """Some writers store ``xl/SharedStrings.xml`` where the relations say
    ``sharedStrings.xml`` (calamine's issue_419.xlsx): calamine finds parts whatever
    their case, and so must the number formats and the pieces (they lost the shared
    strings, and the formats were not seen at all)."""
    import zipfile

    import xlsxwriter

    made = tmp_path / "made.xlsx"
    book = xlsxwriter.Workbook(str(made))
    ws = book.add_worksheet("Leads")
    money = book.add_format({"num_format": '"£"#,##0'})
    ws.write_row(0, 0, HEADERS)
    for r in range(1, 800):
        ws.write_number(r, 0, 7000 + r)
        ws.write_string(r, 1, ["Olivia", "Zoë", "Rhys"][r % 3])
        ws.write_string(r, 2, "Smith")
        ws.write_number(r, 8, 250000, money)
    book.close()
    path = tmp_path / "recased.xlsx"
    renamed = {
        "xl/sharedStrings.xml": "xl/SharedStrings.xml",
        "xl/styles.xml": "xl/Styles.xml",
        "xl/worksheets/sheet1.xml": "xl/worksheets/Sheet1.xml",
    }
    with zipfile.ZipFile(made) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(renamed.get(name, name), src.read(name))
    got = assert_reads_alike(path)
    assert got["rows"][0][1][:3] == [7001.0, "Zoë", "Smith"]
    assert got["rows"][0][1][8] == "£250,000"  # the format, found in xl/Styles.xml


def test_a_sheet_of_only_error_cells_is_refused_alike_in_pieces(tmp_path: Path) -> None:
    """calamine reads error cells as blank: read in pieces, such a sheet was called empty
    where read whole it is refused for its error cells (calamine's errors.xlsx)."""
    import zipfile

    from leadsync.errors import InputError

    plain = write_xlsx(tmp_path / "plain.xlsx", [["x"]], sheet="Leads")
    path = tmp_path / "errors.xlsx"
    rows = b"".join(
        b'<row r="%d"><c r="B%d" t="e"><v>#DIV/0!</v></c><c r="C%d" t="e"><v>#N/A</v></c></row>'
        % (r, r, r)
        for r in range(3, 400)
    )
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in z.infolist():
            data = z.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                start, end = data.index(b"<sheetData>"), data.index(b"</sheetData>")
                data = data[: start + 11] + rows + data[end:]
            out.writestr(item.filename, data)
    said = []
    for piece_bytes in (0, PIECE):
        with pytest.raises(InputError) as raised:
            open_table(path, None, piece_bytes, 1)
        said.append(str(raised.value))
    refused = (
        "sheet 'Leads' of errors.xlsx shows only error cells (#DIV/0! in B3, ...): fix the "
        "formulas behind them"
    )
    assert said == [refused, refused]


def test_cells_left_of_the_header_in_a_later_piece_read_the_sheet_whole(tmp_path: Path) -> None:
    """Read whole, a cell in column A makes the table start there (its header blank);
    a piece cannot know that from the first: the sheet is opened again, whole."""
    rows = [[None, *r] for r in typed_rows(600, seed=1)]
    rows[500][0] = "stray"
    path = write_xlsx(tmp_path / "moved.xlsx", [[None, *HEADERS], *rows])
    config = Config(xlsx_piece_bytes=PIECE)
    table, _, scan = open_rows(path, config)
    assert not table.pieced and table.first_column == 0 and scan.rows == len(rows)
    whole = [outcome(r) for r in leadsync.mapped_rows(path, Config(xlsx_piece_bytes=0))]
    assert [outcome(r) for r in leadsync.mapped_rows(path, config)] == whole
    out = {n: tmp_path / f"r{n}" for n in (0, PIECE)}
    for n, folder in out.items():
        leadsync.validate(path, Config(xlsx_piece_bytes=n), report_dir=folder, xlsx_report=False)
    for name in ("failures.csv", "successes.csv"):
        assert (out[PIECE] / name).read_bytes() == (out[0] / name).read_bytes()


@pytest.fixture
def repeated(tmp_path: Path) -> Path:
    """Rows whose ids repeat across pieces: a row of the first piece repeated in the last."""
    rows = typed_rows(2000, seed=5)
    rows[1][0] = "424242"
    rows[-5][0] = 424242
    rows[900][0] = "777"
    rows[1990][0] = "777"
    return write_xlsx(tmp_path / "repeated.xlsx", [HEADERS, *rows])


@pytest.mark.parametrize(
    ("stream_once_read", "parsers", "held_rows"),
    [(True, 1, 10**6), (False, 1, 10**6), (True, 3, 10**6), (True, 1, 100)],
)
def test_rows_checked_as_the_sheet_is_parsed_get_the_whole_passes_verdicts(
    repeated: Path, stream_once_read: bool, parsers: int, held_rows: int
) -> None:
    config = Config(xlsx_piece_bytes=PIECE, chunk_rows=150)
    whole_config = Config(xlsx_piece_bytes=0, chunk_rows=150)
    table = open_table(repeated, None, 0)
    plan = plan_table(table, whole_config)
    scan = scan_table(table, plan, whole_config)
    assert {"424242", "777"} <= scan.duplicates
    expected = [
        outcome(r)
        for c in checked_chunks(table, plan, whole_config, scan, None, payloads=False)
        for r, _ in rows_of(c, plan)
    ]
    pieced = open_table(repeated, None, PIECE, parsers)
    plan = plan_table(pieced, config)
    assert pieced.pieced
    got_scan, chunks, early = prechecked(
        pieced, plan, config, None, stream_once_read=stream_once_read, held_rows=held_rows
    )
    assert early <= (held_rows + 150 if stream_once_read else 10**6)  # a piece's rows over
    got = [outcome(r) for c in chunks for r, _ in rows_of(c, plan)]
    assert got_scan == scan
    assert got == expected
    bad = [o for o in got if o[1] == "424242"]
    assert len(bad) == 2 and all(o[4] for o in bad)  # both rows refused: a duplicate


def test_a_validation_in_pieces_writes_the_reports_a_whole_read_writes(
    repeated: Path, tmp_path: Path
) -> None:
    out = {n: tmp_path / f"r{n}" for n in (0, PIECE)}
    results = {
        n: leadsync.validate(repeated, Config(xlsx_piece_bytes=n), report_dir=folder)
        for n, folder in out.items()
    }
    for name in ("failures.csv", "successes.csv", "invalid_rows.csv"):
        if (out[0] / name).exists():
            assert (out[PIECE] / name).read_bytes() == (out[0] / name).read_bytes(), name
    for key in ("rows", "outcomes", "problems_by_code", "notices", "file"):
        assert results[PIECE].summary[key] == results[0].summary[key], key
    assert results[PIECE].exit_code == results[0].exit_code


def test_the_repositorys_workbooks_read_alike_in_pieces_where_they_can_be_cut() -> None:
    cut = 0
    for path in sorted(FIXTURES.rglob("*.xlsx")):
        whole, pieced = read(path, 0), read(path, 256)
        for key in ("header", "rows", "chunks", "ids", "notices"):
            assert pieced[key] == whole[key], (path.name, key)
        cut += pieced["pieced"]
    assert cut >= 1


def _truncated(path: Path, out: Path) -> Path:
    """``path`` with its sheet's XML cut off after 60% (the zip itself sound)."""
    import zipfile

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "xl/worksheets/sheet1.xml":
                data = data[: len(data) * 6 // 10]
            dst.writestr(name, data)
    return out


@pytest.mark.parametrize("piece_bytes", [0, PIECE])
def test_a_sheet_cut_off_mid_way_is_refused_with_nothing_written(
    repeated: Path, tmp_path: Path, piece_bytes: int
) -> None:
    from leadsync.errors import InputError

    broken = _truncated(repeated, tmp_path / "broken.xlsx")
    with pytest.raises(InputError, match=r"broken\.xlsx is not a readable Excel workbook"):
        leadsync.validate(broken, Config(xlsx_piece_bytes=piece_bytes), report_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_no_temporary_folder_reads_the_sheet_whole(
    repeated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    expected = read(repeated, 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # no such folder
    got = read(repeated, PIECE)
    assert not got["pieced"]
    assert got["rows"] == expected["rows"]


def test_a_sync_of_a_sheet_read_in_pieces_sends_what_a_whole_read_sends(tmp_path: Path) -> None:
    """Over the real client and the sandbox: the same rows sent with the same bodies, the
    same outcomes (a lead repeated across pieces sent on neither row)."""
    from leadsync.sandbox import Sandbox, SandboxConfig
    from tests.conftest import lead_log
    from tests.test_sync import leads_file, outcomes, run_sync

    src = leads_file(tmp_path / "leads.xlsx", 400)
    from openpyxl import load_workbook

    book = load_workbook(src)
    sheet = book.active
    assert sheet is not None
    sheet["A390"] = sheet["A3"].value  # the lead of row 3 again, some pieces later
    book.save(src)
    assert read(src, PIECE)["parts"] > 3
    sent = {}
    for n in (0, PIECE):
        with Sandbox(SandboxConfig(seed=1)) as sb:
            out = tmp_path / f"out{n}"
            run_sync(sb, src, out, xlsx_piece_bytes=n, rate=400.0)
            sent[n] = (
                sorted((e["lead"], e["method"], json.dumps(e["body"])) for e in lead_log(sb)),
                outcomes(out),
            )
    assert sent[PIECE] == sent[0]
    assert sent[0][1][3] == sent[0][1][390] == "invalid" and len(sent[0][0]) > 390


@pytest.mark.parametrize("piece_bytes", [1, 90, 700])
def test_the_cut_is_the_same_whatever_blocks_the_sheet_is_inflated_in(piece_bytes: int) -> None:
    """The sheet's XML arrives in blocks (4 MB in a run: the tests' sheets fit in one):
    every block size gives the same pieces, which put together are the sheet's rows, each
    cut before a numbered row and never inside a comment or a CDATA section."""
    import io

    from leadsync.reader.pieces import _Book, _cut

    rows = []
    for r in range(1, 80):
        row = b'<row r="%d"><c r="A%d"><v>%d</v></c></row>' % (r, r, r)
        if r % 9 == 4:
            row = b'<!-- <row r="1"> !! --><![CDATA[<row r="2">]]>' + row
        if r % 7 == 2:
            row = row.replace(b' r="%d">' % r, b">", 1)  # a row without its number
        rows.append(row)
    body = b"".join(rows)
    tail = b"</sheetData ><extLst/></worksheet>"
    cuts = {}
    for block in (1, 2, 5, 64, 1000, 1 << 20):
        book = _Book((), "x", b"<sheetData>", b"", body[:3], piece_bytes)
        cuts[block] = list(_cut(io.BytesIO(body[3:] + tail), book, block))
    first = cuts[1]
    assert all(got == first for got in cuts.values())
    assert b"".join(first) == body and len(first) > 3
    for piece in first[1:]:
        assert piece.startswith(b'<row r="'), piece[:40]


def test_comments_odd_spacing_and_unnumbered_rows_are_never_cut_into(tmp_path: Path) -> None:
    """XML any writer may produce: comments and CDATA holding row-like text between rows,
    a line break after ``<row``, rows without their number, ``</sheetData >``."""
    import re
    import zipfile

    plain = write_xlsx(tmp_path / "plain.xlsx", [HEADERS, *typed_rows(900, seed=2)])
    odd = tmp_path / "odd.xlsx"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(odd, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "xl/worksheets/sheet1.xml":
                count = iter(range(10**6))

                def odd_row(m: re.Match[bytes], count: Iterator[int] = count) -> bytes:
                    k = next(count)
                    if k % 7 == 3:  # a comment of fake rows, as long as a piece
                        fake = b'<row r="1"><c r="A1"><v>9</v></c></row>' * 120
                        return b"<!-- " + fake + b" -->" + m.group(0)
                    if k % 11 == 5:
                        return b"<![CDATA[" + b'<row r="2">' * 50 + b"]]>" + m.group(0)
                    if k % 5 == 1:
                        return b"<row\n" + m.group(0)[5:]
                    return m.group(0)

                data = re.sub(rb"<row ", odd_row, data)
                # every 13th row without its number (calamine counts on from the last)
                rows = data.split(b"<row")
                for k in range(13, len(rows), 13):
                    tag = rows[k].index(b">")
                    rows[k] = re.sub(rb'\sr="[0-9]+"', b"", rows[k][:tag], count=1) + rows[k][tag:]
                data = b"<row".join(rows)
                assert len(re.findall(rb"<row(?:\s[^>]*)?>", data)) > len(
                    re.findall(rb"<row\s[^>]*r=", data)
                )
                data = data.replace(b"</sheetData>", b"</sheetData >")
            dst.writestr(name, data)
    assert_reads_alike(odd)
