"""What python-calamine does not say about a legacy ``.xls`` workbook (BIFF): its error
cells (calamine reads them as blank) and the number formats of its cells. xlrd, which
reports both, reads the sheet a second time; an .xls holds at most 65,536 rows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from leadsync.reader.cells import Overlay
from leadsync.reader.datefmt import LOCAL_BUILTIN
from leadsync.reader.numfmt import SHOWN_KINDS, kind


def scan_xls(
    path: Path, sheet: str, short_dates: Mapping[int, str] = LOCAL_BUILTIN
) -> tuple[Overlay, Overlay, bool]:
    """(error cells, formatted cells) of ``sheet``, and whether the workbook counts
    dates from 1904; empty (and False) where xlrd cannot read it."""
    import io

    import xlrd

    errors: Overlay = {}
    formats: Overlay = {}
    try:
        # xlrd prints its warnings about a sloppy file (a size not a multiple of its
        # sectors, no code page) to stdout by default: they would land in --json's output
        book = xlrd.open_workbook(
            str(path), formatting_info=True, on_demand=True, logfile=io.StringIO()
        )
        ws = book.sheet_by_name(sheet)
    except Exception:
        return errors, formats, False
    for r in range(ws.nrows):
        for c, cell in enumerate(ws.row(r)):
            if cell.ctype == xlrd.XL_CELL_ERROR:
                text = xlrd.error_text_from_code.get(cell.value, "#VALUE!")
                errors.setdefault(r + 1, []).append((c, text))
            elif cell.ctype in (xlrd.XL_CELL_NUMBER, xlrd.XL_CELL_DATE):
                xf = book.xf_list[cell.xf_index]
                fmt = book.format_map.get(xf.format_key)
                code = fmt.format_str if fmt is not None else ""
                code = short_dates.get(xf.format_key, code)  # the system's short date
                if code and kind(code) in SHOWN_KINDS:
                    formats.setdefault(r + 1, []).append((c, code))
    book.release_resources()
    return errors, formats, book.datemode == 1
