"""Reader stage: open a CSV/TSV/TXT or Excel file and yield its rows lazily, in chunks.

Every row carries its spreadsheet row number as the user sees it (header = row 1 for a
CSV; the real Excel row for a workbook). No value passes through a float: CSV cells stay
text, and whole numbers from a workbook come back as ``int`` (``375``, not ``375.0``).

One module per kind of file (:mod:`.text`, :mod:`.workbook`), each a
:class:`~leadsync.reader.table.Source` behind the same :class:`Table`.
"""

from __future__ import annotations

from pathlib import Path

from leadsync.defaults import DATE_ORDER, XLSX_PIECE_BYTES
from leadsync.errors import InputError
from leadsync.reader.cells import (
    EXCEL_ERRORS,
    Chunk,
    Shown,
    cell_text,
    column_letter,
    display_text,
    excel_error,
    normalise_cell,
)
from leadsync.reader.datefmt import short_dates
from leadsync.reader.pieces import SheetMoved
from leadsync.reader.sheetxml import SheetScan, scan_sheets
from leadsync.reader.table import Source, Table
from leadsync.reader.text import (
    TEXT_SUFFIXES,
    ZIP_MAGIC,
    detect_encoding,
    looks_like_text,
    open_text,
    sniff_delimiter,
)
from leadsync.reader.workbook import CFB_MAGIC, EXCEL_SUFFIXES, open_excel, sheet_names

__all__ = [
    "EXCEL_ERRORS",
    "Chunk",
    "SheetMoved",
    "SheetScan",
    "Shown",
    "Source",
    "Table",
    "cell_text",
    "column_letter",
    "detect_encoding",
    "display_text",
    "excel_error",
    "normalise_cell",
    "open_table",
    "scan_sheets",
    "sheet_names",
    "sniff_delimiter",
]


def open_table(
    path: str | Path,
    sheet: str | None = None,
    piece_bytes: int = XLSX_PIECE_BYTES,
    parsers: int | None = None,
    date_order: str = DATE_ORDER,
) -> Table:
    """Open ``path`` and read its header; raise :class:`InputError` if it cannot be read.
    ``piece_bytes``: a larger xlsx sheet is parsed in pieces of about this much XML
    (:mod:`leadsync.reader.pieces`; 0: whole), ``parsers`` at a time (None: as the
    machine's cores allow). ``date_order``: the user's (the mapping's ``[dates] order``),
    which is how Excel shows its built-in short date to them."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"file not found: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a folder, not a spreadsheet")
    suffix = p.suffix.lower()
    try:
        with p.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
    if suffix in EXCEL_SUFFIXES or head.startswith((ZIP_MAGIC, CFB_MAGIC)):
        if head.startswith((ZIP_MAGIC, CFB_MAGIC)) or suffix in (".xls", ".xlsb"):
            return open_excel(p, sheet, piece_bytes, parsers, short_dates(date_order))
        if looks_like_text(p):
            table = open_text(p, suffix)
            table.notices.append(f"{p.name} is text, not a workbook: read it as CSV")
            return table
        if not head:
            raise InputError(f"{p.name} is empty (0 bytes): save or export the workbook again")
        raise InputError(f"{p.name} is not a readable Excel workbook (not a zip/xlsx file)")
    if suffix in TEXT_SUFFIXES or looks_like_text(p):
        if sheet is not None:
            raise InputError(f"--sheet does not apply to {p.name}: it is a text file")
        return open_text(p, suffix)
    raise InputError(
        f"unsupported file type {suffix or '(none)'!r} for {p.name}: "
        "use .csv, .tsv, .txt, .xlsx or .xlsm"
    )
