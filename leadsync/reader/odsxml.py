"""One streaming pass over an ods's ``content.xml``, before calamine opens it (calamine
loads every sheet of an ods on opening): each table's used rectangle, for the memory
check (:mod:`leadsync.reader.extent`), and what calamine does not say: error cells (it
reads them as blank), the text a formatted number shows (LibreOffice writes it beside
the value), and date-times at midnight (calamine reads them as plain dates)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import IO
from xml.sax.saxutils import unescape

from leadsync.reader.cells import Overlay, cell_text
from leadsync.reader.extent import Extent, blocks
from leadsync.reader.numfmt import general

MIDNIGHT_FORMAT = "yyyy-mm-dd hh:mm:ss"  # what a date-time cell's overlay entry says
_MAX_ENTRIES = 1_000_000  # overlay entries per table (repeated cells could ask for more)


@dataclass
class OdsScan:
    extents: dict[str, Extent] = field(default_factory=dict)
    errors: dict[str, Overlay] = field(default_factory=dict)  # cell -> error text
    shown: dict[str, Overlay] = field(default_factory=dict)  # cell -> the text it shows
    formats: dict[str, Overlay] = field(default_factory=dict)  # cell -> MIDNIGHT_FORMAT


_TAG = re.compile(
    rb"<(/?)table:(table|table-row|table-cell|covered-table-cell)(?=[\s/>])([^>]*)>"
    rb"|<text:p>([^<]*)</text:p>"
)
_NAME = re.compile(rb"""table:name=["']([^"']*)["']""")
_ROWS_REPEATED = re.compile(rb"""number-rows-repeated=["']([0-9]+)["']""")
_COLUMNS_REPEATED = re.compile(rb"""number-columns-repeated=["']([0-9]+)["']""")
_VALUE_TYPE = re.compile(rb"""office:value-type=["']([a-z]+)["']""")
_CALC_TYPE = re.compile(rb"""calcext:value-type=["']error["']""")
_VALUE = re.compile(rb"""office:value=["']([^"']*)["']""")
_DATE_VALUE = re.compile(rb"""office:date-value=["'][0-9-]+T""")  # a time is written
_TIME_VALUE = re.compile(rb"""office:time-value=["']PT([0-9]+)H([0-9]+)M([0-9]+)S["']""")
_STYLE = re.compile(rb"""table:style-name=["']([^"']*)["']""")
_DATA_STYLE = re.compile(
    rb"""<number:date-style\b[^>]*style:name=["']([^"']*)["'].*?</number:date-style>""", re.S
)
_CELL_STYLE = re.compile(
    rb"""<style:style\b[^>]*style:name=["']([^"']*)["'][^>]*style:data-style-name=["']([^"']*)["']"""
)


def _timed_styles(head: bytes, styles: bytes) -> set[bytes]:
    """The cell styles of ``head`` (content.xml's automatic styles) whose date format
    (there or in styles.xml) shows hours: LibreOffice writes such a cell at midnight as
    a plain date value."""
    timed = {
        m.group(1)
        for text in (head, styles)
        for m in _DATA_STYLE.finditer(text)
        if b"<number:hours" in m.group(0)
    }
    return {m.group(1) for m in _CELL_STYLE.finditer(head) if m.group(2) in timed}


class _Table:
    def __init__(self, name: str) -> None:
        self.name = name
        self.top = self.right = -1
        self.errors: Overlay = {}
        self.shown: Overlay = {}
        self.formats: Overlay = {}
        self.entries = 0

    def add(self, overlay: Overlay, rows: range, cols: range, text: str) -> None:
        for r in rows:
            for c in cols:
                if self.entries >= _MAX_ENTRIES:
                    return
                overlay.setdefault(r + 1, []).append((c, text))
                self.entries += 1


def scan_ods(fh: IO[bytes], styles: bytes = b"") -> OdsScan:
    """Each table's extent and overlays (``styles``: the ods's ``styles.xml``, where
    LibreOffice keeps its date formats). Repeated rows and cells count as many times as
    they repeat; empty ones (LibreOffice pads every sheet with a million) only move the
    next along."""
    scan = OdsScan()
    table = _Table("")
    row = col = 0  # where the next row, and the next cell, go
    repeat = 1  # how many times the current row repeats
    pending: tuple[range, range, bytes, bytes] | None = None  # an open cell worth a look
    text: str | None = None
    head = b""  # content.xml before <office:body>: its automatic styles
    timed: set[bytes] | None = None  # the cell styles whose format shows a time of day
    for data in blocks(fh):
        if timed is None:
            head += data
            if b"<office:body" in head or len(head) > 16 << 20:
                timed = _timed_styles(head.split(b"<office:body", 1)[0], styles)
                head = b""
        for m in _TAG.finditer(data):
            closing, tag, attrs, paragraph = m.group(1), m.group(2), m.group(3), m.group(4)
            if paragraph is not None:
                if pending is not None and text is None:
                    text = unescape(paragraph.decode("utf-8", "replace"))
                continue
            if tag == b"table":
                if closing:
                    _finish(scan, table)
                else:
                    named = _NAME.search(attrs)
                    table = _Table(_unescape(named.group(1)) if named else "")
                    row = 0
            elif tag == b"table-row":
                if closing:
                    row += repeat
                else:
                    rows = _ROWS_REPEATED.search(attrs)
                    repeat, col = (int(rows.group(1)) if rows else 1), 0
                    if attrs.endswith(b"/"):
                        row += repeat
            elif closing:
                if pending is not None:
                    _look(table, pending, text)
                pending = text = None
            else:
                cols = _COLUMNS_REPEATED.search(attrs)
                span = int(cols.group(1)) if cols else 1
                holds = b"value-type" in attrs or not attrs.endswith(b"/")
                if holds:
                    table.top = max(table.top, row + repeat - 1)
                    table.right = max(table.right, col + span - 1)
                    if not attrs.endswith(b"/") and b"value-type" in attrs:
                        kind = _VALUE_TYPE.search(attrs)
                        found = kind.group(1) if kind else b""
                        if _CALC_TYPE.search(attrs):
                            found = b"error"
                        if found == b"date" and timed and not _DATE_VALUE.search(attrs):
                            style = _STYLE.search(attrs)
                            if style is not None and style.group(1) in timed:
                                found = b"midnight"  # a date-time whose time is 00:00
                        where = (range(row, row + repeat), range(col, col + span))
                        pending = (*where, found, attrs)
                        text = None
                col += span
    if table.name and table.name not in scan.extents:
        _finish(scan, table)
    return scan


def _look(table: _Table, pending: tuple[range, range, bytes, bytes], text: str | None) -> None:
    rows, cols, kind, attrs = pending
    if kind == b"error":
        table.add(table.errors, rows, cols, (text or "#N/A").strip())
    elif kind in (b"float", b"percentage", b"currency") and text is not None:
        value = _VALUE.search(attrs)
        try:
            plain = general(float(value.group(1))) if value else None
        except ValueError:
            plain = None
        if plain is not None and text.strip() != plain:
            table.add(table.shown, rows, cols, text)
    elif kind == b"time" and text is not None:
        # a time or a duration: the text it shows, unless that is calamine's own reading
        # of it (a time of day as 14:30:00); calamine reads a duration of a day or more
        # as the file's PT30H00M00S
        value = _TIME_VALUE.search(attrs)
        plain = None
        if value and int(value.group(1)) < 24:
            try:
                hours, minutes, seconds = (int(g) for g in value.groups())
                plain = cell_text(dt.time(hours, minutes, seconds))
            except ValueError:  # minutes or seconds past 59: not a time calamine makes
                plain = None
        if text.strip() != plain:
            table.add(table.shown, rows, cols, text)
    elif kind == b"midnight":
        table.add(table.formats, rows, cols, MIDNIGHT_FORMAT)
        if text is not None:
            table.add(table.shown, rows, cols, text)
    elif kind == b"date" and text is not None:
        # a date as the file shows it (12/07/2025): what a text field sends
        table.add(table.shown, rows, cols, text)


def _finish(scan: OdsScan, table: _Table) -> None:
    top, right = table.top, table.right
    scan.extents[table.name] = Extent(top + 1, right + 1) if top >= 0 else Extent(0, 0)
    for into, overlay in (
        (scan.errors, table.errors),
        (scan.shown, table.shown),
        (scan.formats, table.formats),
    ):
        if overlay:
            into[table.name] = overlay


def _unescape(raw: bytes) -> str:
    return unescape(raw.decode("utf-8", "replace"), {"&quot;": '"', "&apos;": "'"})
