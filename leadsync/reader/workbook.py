"""Workbooks (xlsx, xlsm, xls, xlsb, ods), read by python-calamine: the sheet, the
header row (the first with a value), and error cells put back where calamine leaves a
blank (:mod:`leadsync.reader.sheetxml` finds them)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leadsync.errors import InputError
from leadsync.reader.cells import Chunk, header_names, header_text, present
from leadsync.reader.extent import MAX_SHEET_BYTES, Extent, ods_extents, xlsx_extent
from leadsync.reader.sheetxml import scan_sheets, sheet_parts
from leadsync.reader.table import Source, Table
from leadsync.threads import in_thread

EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
# Workbook limits (README "Limits"): what a zip workbook may unpack to, in all, and how
# far one part may unpack past its packed size once it is large (real sheets: ~5-30x).
MAX_UNPACKED_BYTES = 2 << 30
MAX_RATIO = 250
_RATIO_FROM = 64 << 20
CFB_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls, or an encrypted (password) workbook


def check_unpacked_size(path: Path) -> None:
    """Refuse a zip workbook (xlsx, xlsm, ods) that would unpack past the documented
    limits, from its directory alone, before anything is decompressed: a 5 MB file can
    hold gigabytes of XML (a zip bomb), and calamine would hold it all in memory."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (xls, xlsb) or broken: calamine says what is wrong
    total = sum(m.file_size for m in members)
    if total > MAX_UNPACKED_BYTES:
        raise InputError(
            f"{path.name} unpacks to {total / 2**30:.1f} GB, over leadsync's limit of "
            f"{MAX_UNPACKED_BYTES / 2**30:.0f} GB for a workbook: save it as CSV instead"
        )
    for m in members:
        if m.file_size > _RATIO_FROM and m.file_size > MAX_RATIO * max(1, m.compress_size):
            raise InputError(
                f"{path.name}: {m.filename} unpacks {m.file_size // max(1, m.compress_size)} "
                f"times its packed size (over {MAX_RATIO}): not a workbook a spreadsheet "
                "program wrote; refused"
            )


def _check_memory(path: Path, sheet: str | None) -> None:
    """Refuse a workbook whose sheet would take more than :data:`MAX_SHEET_BYTES` in
    calamine, before calamine loads it (it would abort the process: one stray cell at
    XFD1048576 makes it ask for 512 GB). An ods is judged as a whole, before it is opened
    (``sheet`` None): calamine loads every sheet of an ods on opening. An xlsx is judged
    by the sheet to read, once it is picked."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            ods = "content.xml" in names and "xl/workbook.xml" not in names
            if ods and sheet is None and (extents := ods_extents(z)):
                name, largest = max(extents.items(), key=lambda kv: kv[1].bytes)
                _refuse_past_limit(path, name, largest, sum(e.bytes for e in extents.values()))
            part = sheet_parts(z).get(sheet) if sheet is not None and not ods else None
            extent = xlsx_extent(z, str(part)) if part in names else None
            if extent is not None:
                _refuse_past_limit(path, str(sheet), extent, extent.bytes)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        pass  # not a zip (xls, xlsb) or broken: calamine says what is wrong


def _refuse_past_limit(path: Path, sheet: str, extent: Extent, need: int) -> None:
    if need <= MAX_SHEET_BYTES:
        return
    about = f"about {need / 2**30:,.1f} GB"
    limit = f"leadsync's limit of {MAX_SHEET_BYTES / 2**30:.0f} GB for a sheet"
    if extent.shared_text > extent.bytes // 2:
        raise InputError(
            f"sheet {sheet!r} of {path.name} repeats its shared text into so many cells that "
            f"reading it would take {about} of memory, over {limit}: save the sheet as CSV"
        )
    raise InputError(
        f"sheet {sheet!r} of {path.name} spans {extent.rows:,} rows x {extent.columns:,} "
        f"columns ({extent.cells:,} cells): reading it would take {about} of memory, over "
        f"{limit} (a stray cell far down or right?): delete the cells beyond your data, or "
        "save the sheet as CSV"
    )


def open_excel(path: Path, sheet: str | None) -> Table:
    import python_calamine as pc

    check_unpacked_size(path)
    _check_memory(path, None)
    # the sheets are scanned for formulas without a result and for error cells while
    # calamine reads them (both mostly outside the GIL: 1.49 s instead of 1.63 s for 100k)
    scanning = in_thread(scan_sheets, path, name="leadsync-sheet-scan")
    try:
        workbook = pc.CalamineWorkbook.from_path(str(path))
        name = _pick_sheet(workbook, sheet, path)
        _check_memory(path, name)
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
    if header is None:
        raise InputError(f"sheet {name!r} of {path.name} is empty: expected a header row")
    headers = header_names([header_text(c) for c in header])
    header_row = start_row + 1

    scan = scanning.result()
    errors = scan.errors.get(scan.parts.get(name, ""), {})

    table = Table(
        path=path,
        format="excel",
        headers=headers,
        header_row=header_row,
        first_column=start_col,
        sheet=name,
        source=_SheetSource(worksheet, skip, header_row, start_col, len(headers), errors),
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
        errors: dict[int, list[tuple[int, str]]],
    ) -> None:
        self.worksheet, self.skip, self.header_row = worksheet, skip, header_row
        self.left, self.width, self.errors = left, width, errors

    def data_rows(self) -> Iterator[list[Any]]:
        """The sheet's rows after the header (error cells as the text Excel shows)."""
        rows = itertools.islice(self.worksheet.iter_rows(), self.skip + 1, None)
        if not self.errors:
            return rows
        return _with_errors(rows, self.errors, self.header_row + 1, self.left)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        return enumerate(self.data_rows(), start=self.header_row + 1)

    def fast_chunks(self, table: Table, size: int) -> Iterator[Chunk]:
        # calamine gives every row the range's width: whole blocks, no per-row work
        it = self.data_rows()
        number = self.header_row + 1
        while block := list(itertools.islice(it, size)):
            numbers = range(number, number + len(block))
            if {len(r) for r in block} == {self.width}:
                yield table.chunk_of(block, numbers, {})
            else:
                yield from table.python_chunks(zip(numbers, block, strict=True), size)
            number += len(block)


def _with_errors(
    rows: Iterator[list[Any]], errors: dict[int, list[tuple[int, str]]], first: int, left: int
) -> Iterator[list[Any]]:
    """Put each error cell's text (``#N/A``) where calamine left a blank."""
    for number, cells in enumerate(rows, start=first):
        found = errors.get(number)
        if found:
            cells = list(cells)
            for column, text in found:
                if 0 <= column - left < len(cells):
                    cells[column - left] = text
        yield cells


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
