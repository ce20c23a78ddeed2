"""How much memory python-calamine will take for a sheet, judged before it loads it.

calamine holds a sheet's whole rectangle (first to last used row, times first to last used
column) in memory, about :data:`CELL_BYTES` a cell, and copies a shared string into every
cell that uses it. It cannot be stopped once loading: an allocation it cannot make aborts
the process. So the rectangle comes from the sheet itself first:

- xlsx: its ``<dimension>``, or, where it has none (or names one cell, as some streaming
  writers do), from every row and cell reference in one streaming pass, for sheets of up
  to :data:`MAX_SCANNED_PART` of XML;
- ods: one streaming pass over ``content.xml``, with its repeated rows and cells
  (a 1 KB file can repeat a cell a billion times);
- the shared strings' copies: a 10 KB string in 100,000 cells is 1 GB (from the counts
  Excel writes in ``sharedStrings.xml``, or, when those allow too much, by counting).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from leadsync.errors import InputError
from leadsync.reader.cells import column_index
from leadsync.reader.members import member

# Measured: 10,000,000 cells of short text take 1.03 GB (xlsx, the whole `leadsync
# validate`) and 1.26 GB (ods, calamine alone).
CELL_BYTES = 128
MAX_SHEET_BYTES = 1 << 30  # README "Limits": what one sheet may take in memory
# A sheet without a usable <dimension> is measured from its cells up to this much XML
# (~0.4 s); a larger one is not measured at all: scanning 100 MB of XML took as long as
# calamine took to read it. (Such sheets come from programs, e.g. openpyxl's write-only
# mode, that write no <dimension>; a stray far cell in them is not caught.)
MAX_SCANNED_PART = 8 << 20
_BLOCK = 1 << 22


@dataclass(frozen=True)
class Extent:
    """A sheet's used rectangle, and the bytes of shared text calamine copies into it."""

    rows: int
    columns: int
    shared_text: int = 0

    @property
    def cells(self) -> int:
        return self.rows * self.columns

    @property
    def bytes(self) -> int:
        """About what calamine will hold for the sheet."""
        return self.cells * CELL_BYTES + self.shared_text


def xlsx_extent(z: zipfile.ZipFile, part: str) -> Extent | None:
    """The extent of the xlsx worksheet stored in ``part``; None when it is not known
    (no usable ``<dimension>`` in a part too large to scan quickly)."""
    with z.open(part) as fh:
        head = fh.read(64 * 1024)
    declared = _declared(head)
    if declared is not None and declared.cells > 1 and declared.bytes <= MAX_SHEET_BYTES:
        extent = declared
    elif z.getinfo(part).file_size <= MAX_SCANNED_PART:
        # none, one cell, or past the limit: what the cells themselves say
        with z.open(part) as fh:
            extent = _scanned_xlsx(fh)
    elif declared is not None and declared.cells > 1:
        extent = declared  # past the limit, and too large to prove it wrong
    else:
        return None
    budget = MAX_SHEET_BYTES - extent.cells * CELL_BYTES
    if budget < 0:
        return extent
    return Extent(extent.rows, extent.columns, _shared_text(z, part, budget))


_DIMENSION = re.compile(
    rb"""<(?:[\w.-]+:)?dimension\s+ref=["']([A-Z]{1,3})([0-9]{1,7})(?::([A-Z]{1,3})([0-9]{1,7}))?["']"""
)


def _declared(head: bytes) -> Extent | None:
    m = _DIMENSION.search(head)
    if m is None:
        return None
    first_col, first_row = column_index(m.group(1)), int(m.group(2))
    last_col = column_index(m.group(3)) if m.group(3) else first_col
    last_row = int(m.group(4)) if m.group(4) else first_row
    return Extent(abs(last_row - first_row) + 1, abs(last_col - first_col) + 1)


def blocks(fh: IO[bytes]) -> Iterator[bytes]:
    """The stream in blocks that never cut a tag: each ends before its last ``<``."""
    carry = b""
    while block := fh.read(_BLOCK):
        data = carry + block
        cut = data.rfind(b"<")
        if cut <= 0 or len(data) - cut > 1 << 20:  # no tag, or one absurdly long
            cut = len(data)
        yield data[:cut]
        carry = data[cut:]
    if carry:
        yield carry


_XLSX_TAG = re.compile(rb"<(?:[\w.-]+:)?(row|c)(?=[\s/>])([^>]*)>")
_REF = re.compile(rb"""\sr=["']([A-Z]{0,3})([0-9]{1,9})["']""")


def _scanned_xlsx(fh: IO[bytes]) -> Extent:
    """Every row and cell reference, as calamine reads them: a cell without ``r`` is the
    one after the last, a row without ``r`` the one after the last."""
    row = col = -1
    top = right = -1
    first_row = first_col = 1 << 40
    for data in blocks(fh):
        for m in _XLSX_TAG.finditer(data):
            ref = _REF.search(m.group(2))
            if m.group(1) == b"row":
                row = int(ref.group(2)) - 1 if ref and not ref.group(1) else row + 1
                col = -1
                continue
            if ref and ref.group(1):
                row, col = int(ref.group(2)) - 1, column_index(ref.group(1))
            else:
                col += 1
            if m.group(2).endswith(b"/"):
                continue  # an empty (styled) cell: it holds nothing, calamine skips it
            top, right = max(top, row), max(right, col)
            first_row, first_col = min(first_row, row), min(first_col, col)
    if top < 0:
        return Extent(0, 0)
    return Extent(top - first_row + 1, right - first_col + 1)


_SST = re.compile(rb"<(?:[\w.-]+:)?sst\b[^>]*>")
_COUNT = re.compile(rb"""\scount=["']([0-9]+)["']""")
_UNIQUE = re.compile(rb"""\suniqueCount=["']([0-9]+)["']""")
_SHARED_CELL = re.compile(
    rb"""<(?:[\w.-]+:)?c\b[^>]*\st=["']s["'][^>]*>\s*<(?:[\w.-]+:)?v>([0-9]+)<"""
)


def _shared_text(z: zipfile.ZipFile, part: str, budget: int) -> int:
    """About how many bytes of shared text calamine copies into the sheet's cells.

    Cheap first: every string once, and each use beyond the first (Excel's ``count``
    less ``uniqueCount``) as long as the longest. Only when that bound is over
    ``budget`` are the sheet's shared-string cells counted one by one."""
    from array import array

    try:
        with z.open(member(z, "xl/sharedStrings.xml")) as fh:
            lengths = array("Q")
            counts: tuple[int, int] | None = None
            carry = b""
            for data in blocks(fh):
                if counts is None:
                    counts = _counts(data)
                pieces = (carry + data).split(b"<si")
                lengths.extend(len(p) for p in pieces[1:-1])
                carry = b"<si" + pieces[-1] if len(pieces) > 1 else carry + data
            if carry.startswith(b"<si"):
                lengths.append(len(carry))
    except (KeyError, OSError, zipfile.BadZipFile):
        return 0
    total, longest = sum(lengths), max(lengths, default=0)
    if counts is not None:
        count, unique = counts
        bound = total + max(0, count - unique) * longest
        if bound <= budget:
            return bound
    used = 0
    with z.open(part) as fh:
        for data in blocks(fh):
            for index in _SHARED_CELL.findall(data):
                i = int(index)
                used += lengths[i] if i < len(lengths) else 0
    return used


def _counts(head: bytes) -> tuple[int, int] | None:
    tag = _SST.search(head)
    count = _COUNT.search(tag.group(0)) if tag else None
    unique = _UNIQUE.search(tag.group(0)) if tag else None
    if count is None or unique is None:
        return None
    return int(count.group(1)), int(unique.group(1))


# Workbook limits (README "Limits"): what a zip workbook may unpack to, in all, and how
# far one part may unpack past its packed size once it is large (real sheets: ~5-30x).
MAX_UNPACKED_BYTES = 2 << 30
MAX_RATIO = 250
_RATIO_FROM = 64 << 20


def check_unpacked_size(path: Path) -> None:
    """Refuse a zip workbook (xlsx, xlsm, ods) that would unpack past the documented
    limits, from its directory alone, before anything is decompressed: a 5 MB file can
    hold gigabytes of XML (a zip bomb), and calamine would hold it all in memory."""
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


def check_xlsx_memory(path: Path, sheet: str) -> None:
    """Refuse an xlsx whose ``sheet`` would take more than :data:`MAX_SHEET_BYTES` in
    calamine, before calamine loads it (it would abort the process: one stray cell at
    XFD1048576 makes it ask for 512 GB)."""
    from leadsync.reader.sheetxml import sheet_parts

    try:
        with zipfile.ZipFile(path) as z:
            part = sheet_parts(z).get(sheet)
            extent = xlsx_extent(z, part) if part in set(z.namelist()) else None
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return  # not a zip (xls, xlsb) or broken: calamine says what is wrong
    if extent is not None:
        _refuse_past_limit(path, sheet, extent, extent.bytes)


def check_ods_memory(path: Path, extents: dict[str, Extent]) -> None:
    """Refuse an ods whose sheets together would take more than :data:`MAX_SHEET_BYTES`:
    calamine loads all of them on opening."""
    if extents:
        name, largest = max(extents.items(), key=lambda kv: kv[1].bytes)
        _refuse_past_limit(path, name, largest, sum(e.bytes for e in extents.values()))


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
