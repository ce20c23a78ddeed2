"""Workbooks (xlsx, xlsm, xls, xlsb, ods), read by python-calamine: the sheet, the
header row (the first with a value), and error cells put back where calamine leaves a
blank (:mod:`leadsync.reader.sheetxml` finds them)."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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
)
from leadsync.reader.datefmt import formatted
from leadsync.reader.extent import check_ods_memory, check_unpacked_size, check_xlsx_memory
from leadsync.reader.legacy import scan_xls
from leadsync.reader.numfmt import kind, render
from leadsync.reader.odsxml import OdsScan, scan_ods
from leadsync.reader.sheetxml import scan_sheets
from leadsync.reader.table import Source, Table, text_blocks
from leadsync.threads import in_thread

if TYPE_CHECKING:
    import pyarrow as pa

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
CFB_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls, or an encrypted (password) workbook


def open_excel(path: Path, sheet: str | None) -> Table:
    import python_calamine as pc

    check_unpacked_size(path)
    ods = _ods_scan(path)
    if ods is not None:
        check_ods_memory(path, ods.extents)  # calamine loads every sheet of an ods
    # the sheets are scanned for formulas without a result and for error cells while
    # calamine reads them (both mostly outside the GIL: 1.49 s instead of 1.63 s for 100k)
    scanning = in_thread(scan_sheets, path, name="leadsync-sheet-scan")
    # calamine loads the sheet outside the GIL: what the checks import comes in meanwhile
    warming = in_thread(_import_columnar, name="leadsync-imports")
    try:
        workbook = pc.CalamineWorkbook.from_path(str(path))
        name = _pick_sheet(workbook, sheet, path)
        if ods is None:
            check_xlsx_memory(path, name)
        worksheet = workbook.get_sheet_by_name(name)
    except pc.PasswordError:
        raise InputError(
            f"{path.name} is password-protected: save a copy without a password"
        ) from None
    except (pc.CalamineError, pc.ZipError, pc.XmlError, pc.WorksheetNotFound) as exc:
        raise InputError(f"{path.name} is not a readable Excel workbook ({exc})") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable Excel workbook ({exc})") from None

    start_row, start_col = worksheet.start or (0, 0)
    # calamine may pad the rows above the used range with blanks: the header is the
    # first row with a value, and it sits at the range's first row.
    skip = 0
    header = None
    for cells in worksheet.iter_rows():
        if any(present(c) for c in cells):
            header = cells
            break
        skip += 1
    scan = scanning.result()
    warming.result()
    # what calamine does not say about the sheet: from the ods pass, xlrd, or the scan
    shown: Overlay = {}
    date1904 = False
    if path.suffix.lower() == ".xls":
        errors, formats, date1904 = scan_xls(path, name)
    elif ods is not None:
        errors, shown = ods.errors.get(name, {}), ods.shown.get(name, {})
        formats = ods.formats.get(name, {})
    else:
        part = scan.parts.get(name, "")
        errors, formats = scan.errors.get(part, {}), scan.formats.get(part, {})
        date1904 = scan.date1904
    if header is None:
        _refuse_empty(path, workbook, name, errors, xlsx=ods is None, chosen=sheet is None)
    header_row = start_row + 1
    # a header cell as it shows, as its data cells are (a date header is 01/01/2021)
    overlays = (errors, formats, shown)
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
        source=_SheetSource(worksheet, skip, header_row, start_col, len(headers), overlays),
    )
    unshown = _unrenderable(formats)
    if unshown:
        listed = ", ".join(f"{code!r} (first: {cell})" for code, cell in unshown)
        table.notices.append(
            f"{path.name}: cells with the number format(s) {listed} are sent as their "
            "plain number: leadsync cannot show them as Excel does (change the format, or "
            "save the sheet as CSV from Excel)"
        )
    if path.suffix.lower() == ".xlsb":
        table.notices.append(
            f"{path.name} is a binary workbook (.xlsb): its cells are read without their "
            "number formats, and a cell showing an error (#N/A ...) reads as blank. Save it "
            "as .xlsx in Excel to send what the sheet shows"
        )
    if scan.uncached:
        table.notices.append(
            f"{path.name} has {scan.uncached} formula cell(s) with no saved result (written "
            "by a program that does not calculate): they were read as blank. Open the file "
            "in Excel and save it to store the results"
        )
    return table


class _SheetSource(Source):
    """One worksheet, read by python-calamine; error cells put back from the sheet XML."""

    def __init__(
        self,
        worksheet: Any,
        skip: int,
        header_row: int,
        left: int,
        width: int,
        overlays: tuple[Overlay, Overlay, Overlay],
    ) -> None:
        self.worksheet, self.skip, self.header_row = worksheet, skip, header_row
        self.left, self.width, self.overlays = left, width, overlays

    def data_rows(self) -> Iterator[list[Any]]:
        """The sheet's rows after the header: error cells as the text Excel shows,
        formatted numbers as the text they show (:func:`~leadsync.reader.numfmt.formatted`)."""
        rows = itertools.islice(self.worksheet.iter_rows(), self.skip + 1, None)
        if not any(self.overlays):
            return rows
        return _overlaid(rows, self.overlays, self.header_row + 1, self.left)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        return enumerate(self.data_rows(), start=self.header_row + 1)

    def column_text(self, table: Table, index: int, size: int) -> Iterator[pa.Array]:
        # the id scan's pass: one cell of each row taken, and only that column's error
        # cells and formats put back (a formatted sheet's other cells are not rendered)
        rows = itertools.islice(self.worksheet.iter_rows(), self.skip + 1, None)
        cells: Iterator[list[Any]] = ([r[index]] if index < len(r) else [""] for r in rows)
        at = self.left + index
        errors, formats, shown = (_at_column(overlay, at) for overlay in self.overlays)
        if errors or formats or shown:
            cells = _overlaid(cells, (errors, formats, shown), self.header_row + 1, at)
        return text_blocks((normalise_cell(c[0]) for c in cells), size)

    def fast_chunks(self, table: Table, size: int) -> Iterator[Chunk]:
        # calamine gives every row the range's width: whole blocks, no per-row work (the
        # few rows an overlay names are patched in the block)
        it = itertools.islice(self.worksheet.iter_rows(), self.skip + 1, None)
        marked = sorted(_marked(self.overlays))
        number = self.header_row + 1
        while block := list(itertools.islice(it, size)):
            numbers = range(number, number + len(block))
            first, last = (bisect.bisect_left(marked, n) for n in (number, numbers.stop))
            for row in marked[first:last]:
                block[row - number] = _patched(block[row - number], row, self.overlays, self.left)
            if {len(r) for r in block} == {self.width}:
                yield table.chunk_of(block, numbers, {})
            else:
                yield from table.python_chunks(zip(numbers, block, strict=True), size)
            number += len(block)


def _at_column(overlay: Overlay, column: int) -> Overlay:
    """The part of ``overlay`` in one column (rows with nothing there left out)."""
    kept = ((row, [(c, v) for c, v in put if c == column]) for row, put in overlay.items())
    return {row: put for row, put in kept if put}


def _overlaid(
    rows: Iterator[list[Any]], overlays: tuple[Overlay, Overlay, Overlay], first: int, left: int
) -> Iterator[list[Any]]:
    """``rows`` (the first at sheet row ``first``) with :func:`_patched` applied to the
    rows the overlays name (the others pass untouched)."""
    marked = _marked(overlays)
    for number, cells in enumerate(rows, start=first):
        yield _patched(cells, number, overlays, left) if number in marked else cells


def _marked(overlays: tuple[Overlay, Overlay, Overlay]) -> set[int]:
    """The sheet rows some overlay puts something back on."""
    return set().union(*overlays)


def _patched(
    cells: list[Any], number: int, overlays: tuple[Overlay, Overlay, Overlay], left: int
) -> list[Any]:
    """What calamine does not say, put back on one row (sheet row ``number``): each error
    cell's text (``#N/A``) where it left a blank; each formatted number as the text it
    shows, from its format (xlsx, xls) or as the file wrote it (ods); a date-time at
    midnight as a date-time."""
    errors, formats, shown = overlays
    cells = list(cells)
    width = len(cells)
    for column, code in formats.get(number, ()):
        if 0 <= column - left < width:
            cells[column - left] = formatted(cells[column - left], code)
    for column, text in shown.get(number, ()):
        if 0 <= column - left < width:
            cell = cells[column - left]
            if cell.__class__ in (float, int, dt.time, dt.date, dt.datetime):
                cells[column - left] = Shown(text, normalise_cell(cell))
            elif cell.__class__ is Shown and isinstance(cell.value, dt.date):
                cells[column - left] = Shown(text, cell.value)  # a midnight's
            elif cell.__class__ is str:  # a duration calamine left as PT30H00M00S
                cells[column - left] = text
    for column, text in errors.get(number, ()):
        if 0 <= column - left < width:
            cells[column - left] = text
    return cells


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


def _unrenderable(formats: Overlay) -> list[tuple[str, str]]:
    """The number formats in use that :func:`~leadsync.reader.numfmt.render` cannot
    show, each with the first cell that has it (``E7``)."""
    first: dict[str, str] = {}
    for row in sorted(formats):
        for column, code in formats[row]:
            first.setdefault(code, f"{column_letter(column)}{row}")
    return sorted(
        (code, cell)
        for code, cell in first.items()
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
