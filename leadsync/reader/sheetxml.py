"""What python-calamine does not say about a workbook: error cells (it reads them as
blank, its issue #105), formulas saved without a result, and the number formats of cells
(it exposes none); one streaming pass over each sheet's XML, beside calamine's read."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsync.reader.cells import Overlay, column_index
from leadsync.reader.datefmt import LOCAL_BUILTIN
from leadsync.reader.members import member, read_member
from leadsync.reader.styles import number_styles, styled_cell


@dataclass
class SheetScan:
    """What calamine does not say about a workbook's sheets."""

    uncached: int = 0  # formula cells stored without a result (read as blank)
    # sheet XML part -> row number -> [(0-based column, the error Excel shows)]
    errors: dict[str, Overlay] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)  # sheet name -> its XML part
    # sheet XML part -> row number -> [(0-based column, its number format code)]
    formats: dict[str, Overlay] = field(default_factory=dict)
    date1904: bool = False  # the workbook counts dates from 1904 (Excel for Mac could)


_UNCACHED_FORMULA = re.compile(rb"(?:</f>|<f[^>]*/>)\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>")
_CELL_TAG = re.compile(rb"<(?:[\w.-]+:)?c\s")
_CELL_END = re.compile(rb"</(?:[\w.-]+:)?c>")
_CELL_REF = re.compile(rb"""\sr=["']([A-Z]{1,3})([0-9]{1,7})["']""")
# a cell's opening tag up to its reference (r="B7"), matched at its "<": _CELL_TAG and
# _CELL_REF in one look (a styled cell costs this once: ~190,000 of them in a sheet of
# three formatted columns)
_CELL_OPENING = re.compile(rb"""<(?:[\w.-]+:)?c(?=\s)[^>]*?\sr=["']([A-Z]{1,3})([0-9]{1,7})["']""")
_CELL_VALUE = re.compile(rb"<(?:[\w.-]+:)?v>([^<]*)</(?:[\w.-]+:)?v>")
_MAX_OPEN_CELL = 1 << 20  # bytes: far more than any real cell (32,767 characters at most)
_CARRY = 1 << 12  # bytes carried between blocks: more than a formula's or a cell's tail


def scan_sheets(
    path: Path, skip: str | None = None, short_dates: Mapping[int, str] = LOCAL_BUILTIN
) -> SheetScan:
    """Count formulas stored without a result and find error cells (calamine reads both
    as blank), one streaming pass over each sheet's XML (but the ``skip`` part's: a
    sheet read in pieces has each piece scanned, :class:`RowScanner`)."""
    import zipfile

    scan = SheetScan()
    try:
        with zipfile.ZipFile(path) as z:
            formulas, styles = _context(z, short_dates)
            scan.parts, scan.date1904 = _workbook_facts(z)
            for name in z.namelist():
                if name == skip:
                    continue
                if name.lower().startswith("xl/worksheets/") and name.lower().endswith(".xml"):
                    formats: Overlay = {}
                    with z.open(name) as fh:
                        errors = _scan_part(fh, scan, formulas, formats=(styles, formats))
                    if errors:
                        scan.errors[name] = errors
                    if formats:
                        scan.formats[name] = formats
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        pass  # calamine says what is wrong with the file
    return scan


_Formats = tuple[dict[int, str], Overlay]


def _context(z: Any, short_dates: Mapping[int, str]) -> tuple[bool, dict[int, str]]:
    """Whether formulas without a result are worth counting (Excel and LibreOffice store
    every result), and the workbook's number styles."""
    return not _saved_by_a_calculating_program(z), number_styles(z, short_dates)


class RowScanner:
    """:func:`scan_sheets` for a sheet's rows given as XML pieces (cut between rows)."""

    def __init__(self, z: Any, short_dates: Mapping[int, str] = LOCAL_BUILTIN) -> None:
        self.formulas, self.styles = _context(z, short_dates)

    def scan(self, rows: bytes) -> tuple[Overlay, Overlay, int]:
        """The error cells, the formatted cells and the formulas without a result in
        one piece of a sheet's rows."""
        import io

        scan = SheetScan()
        formats: Overlay = {}
        errors = _scan_part(
            io.BytesIO(rows), scan, self.formulas, len(rows) + 1, formats=(self.styles, formats)
        )
        return errors, formats, scan.uncached


def _scan_part(
    fh: Any,
    scan: SheetScan,
    formulas: bool,
    block_size: int = 1 << 22,
    *,
    formats: _Formats | None = None,
) -> Overlay:
    """One sheet's error cells (row -> [(column, text)]); adds its uncached formulas, and
    (``formats``: the number styles, and where to put the cells that use them) the cells
    whose number format changes what they show."""
    errors: Overlay = {}
    styles, found = formats if formats is not None else ({}, {})
    styled = styled_cell(styles)
    code_of = {str(i).encode(): code for i, code in styles.items()}  # a style's id, as read
    column_of: dict[bytes, int] = {}  # a column's letters, as read -> its index
    data = b""
    done = 0  # bytes of data already looked at for error cells
    styled_from = 0  # ... for styled cells (a match ending after it is new)
    while block := fh.read(block_size):
        kept = len(data)
        data += block
        if styled is not None:
            last = styled_from
            for m in styled.finditer(data, styled_from):
                tag = data.rfind(b"<", 0, m.start())
                close = data.find(b">", m.end())
                if close < 0:
                    break  # the tag goes on in the next block
                last = close + 1
                ref = _CELL_OPENING.match(data, tag, close) if tag >= 0 else None
                if ref is None:
                    continue  # a row's or another element's style
                letters = ref.group(1)
                column = column_of.get(letters)
                if column is None:
                    column = column_of[letters] = column_index(letters)
                row = int(ref.group(2))
                put = found.get(row)
                if put is None:
                    found[row] = [(column, code_of[m.group(1)])]
                else:
                    put.append((column, code_of[m.group(1)]))
            styled_from = max(last, len(data) - _CARRY)
        # (a formula's end without its start only in a block after the first: a piece
        # of a sheet is one block, and there one look is enough)
        if formulas and (b"<f" in data or (kept and b"</f>" in data)):
            # a match ending inside the carried-over bytes was counted already
            scan.uncached += sum(1 for m in _UNCACHED_FORMULA.finditer(data) if m.end() > kept)
        done = _find_errors(data, done, errors)
        if len(data) - done > _MAX_OPEN_CELL:
            # an error cell that never closes (a malformed or hostile file): stop carrying
            # it, or every block would scan it again (quadratic)
            done = len(data) - _CARRY
        cut = max(0, min(done, len(data) - _CARRY))
        data, done = data[cut:], done - cut
        styled_from = max(0, styled_from - cut)
    return errors


def _find_errors(data: bytes, start: int, errors: Overlay) -> int:
    """Record the complete error cells in ``data`` from ``start``; return where the next
    look must start (a cell cut off by the end of the block is looked at again whole)."""
    resume = max(start, len(data) - 8)  # an attribute cut by the block's end: next time
    for hit in _error_types(data, start):
        tag = data.rfind(b"<", 0, hit)
        if tag < 0 or not _CELL_TAG.match(data, tag):
            continue  # another element's t attribute
        close = data.find(b">", hit)
        end = _CELL_END.search(data, close) if close >= 0 else None
        if end is None:
            return tag  # the cell goes on in the next block
        ref = _CELL_REF.search(data, tag, close)
        if ref is not None and data[close - 1 : close] != b"/":
            value = _CELL_VALUE.search(data, close, end.start())
            text = value.group(1).decode("utf-8", "replace").strip() if value else ""
            column = column_index(ref.group(1))
            errors.setdefault(int(ref.group(2)), []).append((column, text or "#N/A"))
        resume = max(resume, end.end())
    return resume


def _error_types(data: bytes, start: int) -> list[int]:
    """Where ``t="e"`` (an error cell's type) stands after a space, in order. bytes.find
    is ~8x faster than a regex here, and most sheets have none."""
    hits = [
        at
        for needle in (b't="e"', b"t='e'")
        for at in _occurrences(data, needle, start)
        if at > 0 and data[at - 1 : at].isspace()
    ]
    return sorted(hits)


# a needle's rarest byte is looked for first (memchr: ~10x faster than a find of the
# whole needle, which costs ~0.08 s per 100 MB of XML, time the GIL is held) where it
# occurs at most this many times; past that, the needle itself
_RARE_HITS = 4096


def _occurrences(
    data: bytes, needle: bytes, start: int, rare_hits: int = _RARE_HITS
) -> Iterator[int]:
    """Where ``needle`` occurs in ``data`` from ``start``, in order, non-overlapping. A
    single-quoted attribute is found by its quote (few in most sheets: an O'Brien)."""
    at = start
    quote = needle.find(b"'")
    if quote >= 0:
        for _ in range(rare_hits):
            hit = data.find(b"'", at + quote)
            if hit < 0:
                return
            at = hit - quote
            if data.startswith(needle, at):
                yield at
                at += len(needle)
            else:
                at += 1
    at = data.find(needle, at)
    while at >= 0:
        yield at
        at = data.find(needle, at + len(needle))


def sheet_parts(z: Any) -> dict[str, str]:
    """Sheet name -> the XML part that holds it, from the workbook and its relations."""
    return _workbook_facts(z)[0]


def _workbook_facts(z: Any) -> tuple[dict[str, str], bool]:
    """From ``xl/workbook.xml``: :func:`sheet_parts`, and whether the workbook counts dates
    from 1904 (``<workbookPr date1904="1"/>``: a date cell is converted by calamine, but a
    bare serial is read by that system)."""
    import posixpath
    from xml.etree import ElementTree

    try:
        book = ElementTree.fromstring(read_member(z, "xl/workbook.xml"))
        rels = ElementTree.fromstring(read_member(z, "xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return {}, False
    targets = {r.get("Id"): r.get("Target", "") for r in rels}
    parts = {}
    date1904 = False
    for element in book.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "workbookPr":
            date1904 = element.get("date1904", "").strip().lower() in ("1", "true")
        if tag != "sheet":
            continue
        # r:id, in the transitional namespace or the strict one (ISO 29500 Strict files)
        rid = next((v for k, v in element.attrib.items() if k.endswith("}id")), None)
        target = targets.get(rid)
        if target and element.get("name") is not None:
            part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            parts[str(element.get("name"))] = member(z, posixpath.normpath(part))
    return parts, date1904


def _saved_by_a_calculating_program(z: Any) -> bool:
    try:
        app = read_member(z, "docProps/app.xml")
    except KeyError:
        return False
    m = re.search(rb"<Application>([^<]*)</Application>", app)
    name = m.group(1).strip() if m else b""
    return name == b"Microsoft Excel" or name.startswith(b"LibreOffice")
