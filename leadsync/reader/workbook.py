"""Workbooks (xlsx, xlsm, xls, xlsb, ods), read by python-calamine: the sheet, the
header row (the first with a value), and error cells put back where calamine leaves a
blank (:mod:`leadsync.reader.sheetxml` finds them)."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from leadsync.defaults import XLSX_PIECE_BYTES
from leadsync.errors import InputError
from leadsync.reader.cells import (
    Chunk,
    Overlay,
    Shown,
    column_letter,
    header_names,
    header_text,
    normalise_cell,
    present,
    whole_floats,
)
from leadsync.reader.datefmt import LOCAL_BUILTIN, formatted
from leadsync.reader.extent import check_ods_memory, check_unpacked_size, check_xlsx_memory
from leadsync.reader.legacy import scan_xls
from leadsync.reader.numfmt import kind, render
from leadsync.reader.odsxml import OdsScan, scan_ods
from leadsync.reader.pieces import Piece, Pieces, SheetMoved, open_pieces
from leadsync.reader.sheetxml import scan_sheets, sheet_parts
from leadsync.reader.table import Source, Table, id_texts
from leadsync.threads import in_thread

if TYPE_CHECKING:
    import pyarrow as pa

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
CFB_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls, or an encrypted (password) workbook


def open_excel(
    path: Path,
    sheet: str | None,
    piece_bytes: int = XLSX_PIECE_BYTES,
    parsers: int | None = None,
    short_dates: Mapping[int, str] = LOCAL_BUILTIN,
) -> Table:
    """A workbook's sheet (see :func:`leadsync.reader.open_table`); ``short_dates``:
    Excel's built-in short date formats as the user's Excel shows them."""
    import python_calamine as pc

    check_unpacked_size(path)
    ods = _ods_scan(path)
    if ods is not None:
        check_ods_memory(path, ods.extents)  # calamine loads every sheet of an ods
    # calamine loads the sheet outside the GIL: what the checks import comes in meanwhile
    warming = in_thread(_import_columnar, name="leadsync-imports")
    try:
        workbook = pc.CalamineWorkbook.from_path(str(path))
        name = _pick_sheet(workbook, sheet, path)
        if ods is None:
            check_xlsx_memory(path, name)
        # a large sheet is parsed in pieces, in a thread: the first rows are checked
        # while the rest are parsed (see leadsync.reader.pieces); each piece is scanned
        # for what calamine does not say as it is cut
        pieces = _pieces(path, name, piece_bytes, parsers, short_dates) if ods is None else None
        # the sheets are scanned for formulas without a result and for error cells while
        # calamine reads them (both mostly outside the GIL: 1.49 s instead of 1.63 s for 100k)
        skip = pieces.part if pieces is not None else None
        scanning = in_thread(scan_sheets, path, skip, short_dates, name="leadsync-sheet-scan")
        worksheet = workbook.get_sheet_by_name(name) if pieces is None else None
    except pc.PasswordError:
        raise InputError(
            f"{path.name} is password-protected: save a copy without a password"
        ) from None
    except (pc.CalamineError, pc.ZipError, pc.XmlError, pc.WorksheetNotFound) as exc:
        raise InputError(f"{path.name} is not a readable Excel workbook ({exc})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable Excel workbook ({exc})") from None

    if pieces is not None:
        header_row, start_col, header, header_overlays = _pieced_header(pieces)
    else:
        header_row, start_col, header = _whole_header(worksheet)
    scan = scanning.result()
    warming.result()
    # what calamine does not say about the sheet: from the ods pass, xlrd, or the scan
    shown: Overlay = {}
    date1904 = False
    if path.suffix.lower() == ".xls":
        errors, formats, date1904 = scan_xls(path, name, short_dates)
    elif ods is not None:
        errors, shown = ods.errors.get(name, {}), ods.shown.get(name, {})
        formats = ods.formats.get(name, {})
    else:
        part = scan.parts.get(name, "")
        errors, formats = scan.errors.get(part, {}), scan.formats.get(part, {})
        date1904 = scan.date1904
    overlays = (errors, formats, shown) if pieces is None else header_overlays
    if header is None:
        errors = overlays[0]  # (a sheet read in pieces: the pieces' error cells)
        _refuse_empty(path, workbook, name, errors, xlsx=ods is None, chosen=sheet is None)
    # a header cell as it shows, as its data cells are (a date header is 01/01/2021)
    header = _patched(header, header_row, overlays, start_col)
    headers = header_names([header_text(c) for c in header])

    table = Table(
        path=path,
        format="excel",
        headers=headers,
        header_row=header_row,
        first_column=start_col,
        sheet=name,
        date1904=date1904,
    )
    if pieces is None:
        table.source = _SheetSource(
            _whole_runs(worksheet, header_row, overlays), header_row, start_col, len(headers)
        )
        first: dict[str, tuple[int, int]] = {}
        _first_cells(formats, first)
        _notices(table, first, scan.uncached)
    else:
        runs = _pieced_runs(pieces, header_row, start_col, table, scan.uncached)
        table.source = _SheetSource(runs, header_row, start_col, len(headers), pieces)
    if path.suffix.lower() == ".xlsb":
        table.notices.append(
            f"{path.name} is a binary workbook (.xlsb): its cells are read without their "
            "number formats, and a cell showing an error (#N/A ...) reads as blank. Save it "
            "as .xlsx in Excel to send what the sheet shows"
        )
    return table


def _notices(table: Table, first: dict[str, tuple[int, int]], uncached: int) -> None:
    """What the user is told about the sheet's cells: formats leadsync cannot render
    (``first``: the first cell of each format), formulas stored without a result."""
    name = table.path.name
    unshown = _unrenderable(first)
    if unshown:
        listed = ", ".join(f"{code!r} (first: {cell})" for code, cell in unshown)
        table.notices.append(
            f"{name}: cells with the number format(s) {listed} are sent as their "
            "plain number: leadsync cannot show them as Excel does (change the format, or "
            "save the sheet as CSV from Excel)"
        )
    if uncached:
        table.notices.append(
            f"{name} has {uncached} formula cell(s) with no saved result (written "
            "by a program that does not calculate): they were read as blank. Open the file "
            "in Excel and save it to store the results"
        )


_Overlays = tuple[Overlay, Overlay, Overlay]  # error cells, formatted cells, shown texts
# A run of rows: the sheet row number of its first, its rows (cells from the table's first
# column) and what the overlays put back on them; a sheet read whole is one run, a sheet
# read in pieces one or two for each (the blank rows between two pieces are a run)
_Run = tuple[int, Iterable[list[Any]], _Overlays]
_NONE: _Overlays = ({}, {}, {})


def _pieces(
    path: Path, name: str, piece_bytes: int, parsers: int | None, short_dates: Mapping[int, str]
) -> Pieces | None:
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            part = sheet_parts(z).get(name)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    return open_pieces(path, part, piece_bytes, path.name, parsers, short_dates) if part else None


def _whole_header(worksheet: Any) -> tuple[int, int, list[Any] | None]:
    """The header's sheet row, the sheet's first column, and the header's cells (None:
    the sheet has no value). calamine pads the rows above the used range with blanks
    (row i is sheet row i + 1); the header is the first row with a value."""
    left = (worksheet.start or (0, 0))[1]
    for number, cells in enumerate(worksheet.iter_rows(), start=1):
        if any(present(c) for c in cells):
            return number, left, cells
    return 0, left, None


def _whole_runs(
    worksheet: Any, header_row: int, overlays: _Overlays
) -> Callable[[], Iterator[_Run]]:
    def runs() -> Iterator[_Run]:
        yield header_row + 1, itertools.islice(worksheet.iter_rows(), header_row, None), overlays

    return runs


def _overlays(piece: Piece) -> _Overlays:
    return (piece.errors, piece.formats, {})


def _pieced_header(pieces: Pieces) -> tuple[int, int, list[Any] | None, _Overlays]:
    """:func:`_whole_header` for a sheet read in pieces, and its piece's overlays (for a
    sheet without a value: every piece's error cells, which calamine reads as blank)."""
    left = None
    errors: Overlay = {}
    for piece in pieces:
        errors.update(piece.errors)
        if not piece.height:
            continue
        left = piece.first_column if left is None else left
        for at, cells in enumerate(piece.rows()):
            if any(present(c) for c in cells):
                pad = [""] * (piece.first_column - left)
                return piece.first_row + at, left, pad + cells, _overlays(piece)
    return 0, left or 0, None, (errors, {}, {})


def _pieced_runs(
    pieces: Pieces, header_row: int, left: int, table: Table, uncached: int
) -> Callable[[], Iterator[_Run]]:
    """The runs of a sheet read in pieces, after the header; the first time every piece
    has been through, what the user is told about the sheet's cells (:func:`_notices`)."""
    told = False

    def runs(once: bool = False) -> Iterator[_Run]:
        nonlocal told
        following = header_row + 1
        first: dict[str, tuple[int, int]] = {}
        skipped = uncached
        for piece in pieces.read(once):
            _first_cells(piece.formats, first)
            skipped += piece.uncached
            height = piece.height
            if not height or piece.first_row + height <= following:
                continue
            if piece.first_column < left:
                raise SheetMoved(piece.first_row)
            if piece.first_row > following:  # the rows between two pieces are blank
                blank = [""] * len(table.headers)
                yield following, [blank] * (piece.first_row - following), _NONE
            skip = max(0, following - piece.first_row)
            rows = _PieceRows(piece, skip, piece.first_column - left)
            yield piece.first_row + skip, rows, _overlays(piece)
            following = piece.first_row + height
        if not told:
            told = True
            _notices(table, first, skipped)

    return runs


class _PieceRows:
    """A piece's rows, read out of calamine when first iterated and kept until
    :meth:`release` (``skip``: the first rows left out; ``shift``: blank cells put before
    each row, for a piece whose first cells sit right of the sheet's first column)."""

    def __init__(self, piece: Piece, skip: int, shift: int) -> None:
        self.piece, self.skip, self.shift = piece, skip, shift
        self.kept: list[list[Any]] | None = None

    def __iter__(self) -> Iterator[list[Any]]:
        if self.kept is None:
            rows = self.piece.rows()
            if self.skip:
                rows = rows[self.skip :]
            if self.shift:
                pad = [""] * self.shift
                rows = [pad + r for r in rows]
            self.kept = rows
        return iter(self.kept)

    def release(self) -> None:
        self.kept = None


class _SheetSource(Source):
    """One worksheet, read by python-calamine (whole, or in pieces); error cells and
    formatted numbers put back from the sheet XML."""

    def __init__(
        self,
        runs: Callable[..., Iterator[_Run]],
        header_row: int,
        left: int,
        width: int,
        pieces: Pieces | None = None,
    ) -> None:
        self.runs, self.header_row, self.left, self.width = runs, header_row, left, width
        self.pieces = pieces
        self.pieced = pieces is not None

    @property
    def read_through(self) -> bool:
        return self.pieces is None or self.pieces.finished

    def close(self) -> None:
        if self.pieces is not None:
            self.pieces.close()

    def data_rows(self) -> Iterator[list[Any]]:
        """The sheet's rows after the header: error cells as the text Excel shows,
        formatted numbers as the text they show (:func:`~leadsync.reader.numfmt.formatted`)."""
        return (cells for _, cells in self.rows())

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        for first, rows, overlays in self.runs():
            marked = _marked(overlays)
            for number, cells in enumerate(rows, start=first):
                if number in marked:
                    cells = _patched(cells, number, overlays, self.left)
                yield number, cells

    def parts(self, once: bool = False) -> Iterator[Source]:
        """The sheet as it is parsed: a source for each run of rows (a sheet read whole
        is one), each there as soon as calamine has parsed it; ``once``: each piece let
        go with its part (the sheet cannot be read again)."""
        if not self.pieced:
            yield self
            return
        for run in self.runs(once):
            yield _SheetSource(_one(run), self.header_row, self.left, self.width)

    def release(self) -> None:
        for _, rows, _ in self.runs():
            if isinstance(rows, _PieceRows):
                rows.release()

    def column_text(self, table: Table, index: int, size: int) -> Iterator[pa.Array]:
        # the id scan's pass: one cell of each row taken, and only that column's error
        # cells and formats put back (a formatted sheet's other cells are not rendered)
        at = self.left + index

        for first, rows, overlays in self.runs():
            mine = tuple(_at_column(overlay, at) for overlay in overlays)
            marked = _marked(mine)  # type: ignore[arg-type]
            column = [r[index] if index < len(r) else "" for r in rows]
            for number in marked:
                if 0 <= number - first < len(column):
                    cell = [column[number - first]]
                    column[number - first] = _patched(cell, number, mine, at)[0]  # type: ignore[arg-type]
            column = whole_floats(column)  # normalise_cell, for a column
            for start in range(0, len(column), size):
                yield id_texts(column[start : start + size])

    def fast_chunks(self, table: Table, size: int) -> Iterator[Chunk]:
        # calamine gives every row the range's width: whole blocks, no per-row work (the
        # few rows an overlay names are patched in the block)
        for number, rows, overlays in self.runs():
            marked = sorted(_marked(overlays))
            it = iter(rows)
            while block := list(itertools.islice(it, size)):
                numbers = range(number, number + len(block))
                first, last = (bisect.bisect_left(marked, n) for n in (number, numbers.stop))
                named = marked[first:last]
                if {len(r) for r in block} == {self.width}:
                    # the rows the overlays name are patched column by column
                    patch = partial(_patch_rows, named, number, overlays, self.left)
                    yield table.chunk_of(block, numbers, {}, patch if named else None)
                else:
                    for row in named:
                        block[row - number] = _patched(
                            block[row - number], row, overlays, self.left
                        )
                    yield from table.python_chunks(zip(numbers, block, strict=True), size)
                number += len(block)


def _patch_rows(
    rows: list[int], first: int, overlays: _Overlays, left: int, columns: list[list[Any]]
) -> None:
    """:func:`_patch` on each of ``rows`` (sheet rows; ``columns`` start at ``first``)."""
    for row in rows:
        _patch(columns, row - first, row, overlays, left)


def _one(run: _Run) -> Callable[[], Iterator[_Run]]:
    return lambda: iter((run,))


def _at_column(overlay: Overlay, column: int) -> Overlay:
    """The part of ``overlay`` in one column (rows with nothing there left out)."""
    kept = ((row, [(c, v) for c, v in put if c == column]) for row, put in overlay.items())
    return {row: put for row, put in kept if put}


def _marked(overlays: tuple[Overlay, Overlay, Overlay]) -> set[int]:
    """The sheet rows some overlay puts something back on."""
    return set().union(*overlays)


def _patched(
    cells: list[Any], number: int, overlays: tuple[Overlay, Overlay, Overlay], left: int
) -> list[Any]:
    """:func:`_patch` on one row (sheet row ``number``), as a new list."""
    columns = [[c] for c in cells]
    _patch(columns, 0, number, overlays, left)
    return [c[0] for c in columns]


def _patch(
    columns: list[list[Any]],
    k: int,
    number: int,
    overlays: tuple[Overlay, Overlay, Overlay],
    left: int,
) -> None:
    """What calamine does not say, put back on row ``k`` of ``columns`` (sheet row
    ``number``; the first column is sheet column ``left``): each error cell's text
    (``#N/A``) where it left a blank; each formatted number as the text it shows, from
    its format (xlsx, xls) or as the file wrote it (ods); a date-time at midnight as a
    date-time."""
    errors, formats, shown = overlays
    width = len(columns)
    for column, code in formats.get(number, ()):
        if 0 <= column - left < width:
            cells = columns[column - left]
            cells[k] = formatted(cells[k], code)
    for column, text in shown.get(number, ()):
        if 0 <= column - left < width:
            cells = columns[column - left]
            cell = cells[k]
            if cell.__class__ in (float, int, dt.time, dt.date, dt.datetime):
                cells[k] = Shown(text, normalise_cell(cell))
            elif cell.__class__ is Shown and isinstance(cell.value, dt.date):
                cells[k] = Shown(text, cell.value)  # a midnight's
            elif cell.__class__ is str:  # a duration calamine left as PT30H00M00S
                cells[k] = text
    for column, text in errors.get(number, ()):
        if 0 <= column - left < width:
            columns[column - left][k] = text


def _import_columnar() -> None:
    import numpy  # noqa: F401
    import pyarrow.compute  # noqa: F401


def _refuse_empty(
    path: Path, workbook: Any, name: str, errors: Overlay, *, xlsx: bool, chosen: bool
) -> NoReturn:
    """Why the sheet has no header: it shows only error cells (``errors``: calamine reads
    them as blank), or it is empty, and then which other sheet has rows (when none was
    asked for). ``xlsx``: another sheet's memory is checked before it is loaded."""
    if errors:
        row = min(errors)
        column, text = errors[row][0]
        raise InputError(
            f"sheet {name!r} of {path.name} shows only error cells ({text} in "
            f"{column_letter(column)}{row}, ...): fix the formulas behind them"
        )
    if chosen:
        import python_calamine as pc

        for meta in workbook.sheets_metadata:
            other = str(meta.name)
            if other == name or meta.typ != pc.SheetTypeEnum.WorkSheet:
                continue
            if xlsx:
                check_xlsx_memory(path, other)
            if any(
                any(present(c) for c in r) for r in workbook.get_sheet_by_name(other).iter_rows()
            ):
                raise InputError(
                    f"sheet {name!r} of {path.name} is empty, and sheet {other!r} has rows: "
                    f"read it with --sheet {other!r}"
                )
    raise InputError(f"sheet {name!r} of {path.name} is empty: expected a header row")


def _ods_scan(path: Path) -> OdsScan | None:
    """The ods pass over ``content.xml`` (None: not an ods)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "content.xml" not in names or "xl/workbook.xml" in names:
                return None
            styles = z.read("styles.xml") if "styles.xml" in names else b""
            with z.open("content.xml") as fh:
                return scan_ods(fh, styles[: 16 << 20])
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None  # not a zip (xls, xlsb) or broken: calamine says what is wrong


def _first_cells(formats: Overlay, into: dict[str, tuple[int, int]]) -> None:
    """For each number format in ``formats``, the first cell that has it (row, column),
    added to ``into`` where it comes first."""
    for row, put in formats.items():
        for column, code in put:
            at = into.get(code)
            if at is None or (row, column) < at:
                into[code] = (row, column)


def _unrenderable(first: dict[str, tuple[int, int]]) -> list[tuple[str, str]]:
    """The number formats in use that :func:`~leadsync.reader.numfmt.render` cannot
    show, each with the first cell that has it (``E7``)."""
    return sorted(
        (code, f"{column_letter(column)}{row}")
        for code, (row, column) in first.items()
        if kind(code) == "number" and render(1234.5, code) is None
    )


def sheet_names(path: Path) -> list[str]:
    """The worksheets of a workbook, in the workbook's order (hidden ones too); []
    for a file that is not one calamine can read."""
    import python_calamine as pc

    try:
        workbook = pc.CalamineWorkbook.from_path(str(path))
    except (pc.CalamineError, pc.ZipError, pc.XmlError, pc.PasswordError, OSError, ValueError):
        return []
    return [str(m.name) for m in workbook.sheets_metadata if m.typ == pc.SheetTypeEnum.WorkSheet]


def _pick_sheet(workbook: Any, wanted: str | None, path: Path) -> str:
    import python_calamine as pc

    sheets = [m for m in workbook.sheets_metadata if m.typ == pc.SheetTypeEnum.WorkSheet]
    names: list[str] = [str(m.name) for m in sheets]
    if wanted is None:
        for m in sheets:
            if m.visible == pc.SheetVisibleEnum.Visible:
                return str(m.name)
        raise InputError(f"{path.name} has no visible worksheet: use --sheet NAME")
    if wanted in names:
        return wanted
    folded = [n for n in names if n.casefold() == wanted.strip().casefold()]
    if len(folded) == 1:
        return folded[0]
    if wanted.isdigit() and 1 <= int(wanted) <= len(names):
        return names[int(wanted) - 1]
    raise InputError(
        f"no sheet named {wanted!r} in {path.name}; its sheets are: {', '.join(names)}"
    )
