"""A large worksheet read in pieces: its XML cut between rows into small one-sheet
workbooks (private, unnamed temporary files) that python-calamine parses in background
threads (one on a two-core machine), so the rows of the first pieces are checked while the
rest are parsed (calamine reads a sheet whole before it gives a row; on its own it would
hold every cell of the sheet before the first check could start).

A piece is cut only before a row that names its number (``<row r="...">``), so every
cell keeps its sheet position; each piece is read by calamine exactly as the whole sheet
is (the same shared strings, styles and date system) and :class:`Pieces` gives back
``(first row, first column, rows)`` per piece. Whatever this module cannot cut safely
(a namespace prefix, no ``<sheetData>``, a small sheet, no ``/proc/self/fd`` to hand a
temporary file to calamine) is read whole, as before.
"""

from __future__ import annotations

import os
import queue
import re
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from leadsync.errors import InputError
from leadsync.reader.cells import Overlay
from leadsync.reader.datefmt import LOCAL_BUILTIN
from leadsync.reader.members import member, read_member
from leadsync.reader.sheetxml import RowScanner

_SHEET_DATA = b"<sheetData>"
_SHEET_DATA_END = b"</sheetData"  # (a closing tag may hold spaces before its >)
_ROOT = re.compile(rb"<((?:[\w.-]+:)?worksheet)[\s>]")
_ROW = re.compile(rb"<row\s")
_NUMBERED_ROW = re.compile(rb"""<row\s[^>]*?\br=["'][0-9]""")
_SHEETS = re.compile(rb"(<(?:[\w.-]+:)?sheets\b[^>]*>).*?(</(?:[\w.-]+:)?sheets>)", re.S)
_SHEET = re.compile(rb"<(?:[\w.-]+:)?sheet\b[^>]*?>")
_HEAD_LIMIT = 4 << 20  # bytes of XML before <sheetData> (views, columns): more is odd
_BLOCK = 4 << 20  # bytes inflated at a time
_SHARED_TEXT_SHARE = 4  # a piece is at least this many times the shared strings' size
_AHEAD = 2  # pieces cut ahead of the parsers (each a temporary file the size of a piece)


class SheetMoved(Exception):
    """A piece of the sheet has cells left of the first piece's: the sheet's first column
    (and so its header) is not what the first piece said; it must be read whole."""

    def __init__(self, row: int) -> None:
        super().__init__(f"cells left of the header's first column from row {row}")
        self.row = row


@dataclass(frozen=True)
class Piece:
    """One piece of the sheet: its rows as calamine reads them, from sheet row ``first_row``
    (1-based) and 0-based column ``first_column``; no rows for a piece without a cell."""

    first_row: int
    first_column: int
    sheet: Any  # a python_calamine.CalamineSheet
    # what calamine does not say about the piece's cells (see leadsync.reader.sheetxml)
    errors: Overlay
    formats: Overlay
    uncached: int

    @property
    def height(self) -> int:
        """How many rows the piece holds (without reading them out)."""
        start, end = self.sheet.start, self.sheet.end
        return 0 if start is None or end is None else int(end[0] - start[0] + 1)

    def rows(self) -> list[list[Any]]:
        """The piece's rows, read out of calamine (each call anew: nothing is kept)."""
        return self.sheet.to_python() if self.sheet.start is not None else []


class Pieces:
    """The pieces of one worksheet: cut in one thread, scanned and parsed in others,
    handed on in order; iterating waits for each in turn (and can be done again: the
    parsed pieces are kept, unless read ``once``)."""

    def __init__(
        self,
        source: zipfile.ZipFile,
        stream: IO[bytes],
        book: _Book,
        name: str,
        parsers: int | None = None,
        short_dates: Mapping[int, str] = LOCAL_BUILTIN,
    ) -> None:
        self._name = name
        self.part = book.part  # the sheet's XML part
        self._scanner = RowScanner(source, short_dates)
        self._parsed: dict[int, Piece | None] = {}  # by position; None: let go (read once)
        self._count: int | None = None  # how many pieces, once the sheet is all cut
        self._error: BaseException | None = None
        self._ready = threading.Condition()
        self._stop = threading.Event()
        count = parsers or _parsers()
        built: queue.Queue[Any] = queue.Queue(maxsize=_AHEAD + count)
        threading.Thread(
            target=self._build, args=(source, stream, book, built, count), daemon=True,
            name="leadsync-pieces",
        ).start()  # fmt: skip
        for k in range(count):
            threading.Thread(
                target=self._parse, args=(built,), daemon=True, name=f"leadsync-calamine-{k}"
            ).start()

    def __iter__(self) -> Iterator[Piece]:
        return self.read()

    def read(self, once: bool = False) -> Iterator[Piece]:
        """The pieces in order, each as soon as it is parsed; ``once``: each let go by
        these pieces when the next is asked for (it lives on while its reader holds it),
        and they cannot be read again."""
        index = 0

        def ready() -> bool:
            done = self._count is not None and index >= self._count
            return index in self._parsed or done or self._error is not None

        while True:
            with self._ready:
                self._ready.wait_for(ready)
                if self._error is not None:
                    raise self._error
                if index not in self._parsed:
                    return
                piece = self._parsed[index]
            if piece is None:
                raise RuntimeError("the sheet's pieces were read once, and let go")
            yield piece
            if once:
                self._parsed[index] = None
            index += 1

    @property
    def finished(self) -> bool:
        """Whether every piece is parsed (iterating them no longer waits)."""
        return self._count is not None and len(self._parsed) == self._count

    def close(self) -> None:
        """Stop building pieces nobody will read (a run that ended early)."""
        self._stop.set()

    def _build(
        self,
        source: zipfile.ZipFile,
        stream: IO[bytes],
        book: _Book,
        built: queue.Queue[Any],
        parsers: int,
    ) -> None:
        count = 0
        try:
            with source, stream:
                for xml in _cut(stream, book):
                    if self._stop.is_set():
                        break
                    # one parser: the scan is done here, beside it (its work and
                    # calamine's would otherwise be one chain); more: each scans its own
                    scanned = self._scanner.scan(xml) if parsers == 1 else None
                    built.put((count, _write(book, xml), xml, scanned))
                    count += 1
            with self._ready:
                self._count = count
                self._ready.notify_all()
        except BaseException as exc:  # handed to the reader of the pieces
            self._fail(exc)
        finally:
            for _ in range(parsers):
                built.put(None)

    def _parse(self, built: queue.Queue[Any]) -> None:
        import python_calamine as pc

        while (item := built.get()) is not None:
            index, handle, xml, scanned = item
            try:
                with handle:
                    if self._error is not None:
                        continue  # the reading has failed: only the files are closed
                    # what calamine does not say about the piece's cells, then its cells
                    errors, formats, uncached = scanned or self._scanner.scan(xml)
                    workbook = pc.CalamineWorkbook.from_path(f"/proc/self/fd/{handle.fileno()}")
                    sheet = workbook.get_sheet_by_index(0)
                    workbook.close()
            except BaseException as exc:  # re-raised where the pieces are read
                self._fail(exc)
                continue
            row, column = sheet.start or (0, 0)
            piece = Piece(row + 1, column, sheet, errors, formats, uncached)
            with self._ready:
                self._parsed[index] = piece
                self._ready.notify_all()

    def _fail(self, exc: BaseException) -> None:
        import python_calamine as pc

        if isinstance(exc, _NoRoomError):
            exc = InputError(
                f"{self._name}: no room for the pieces its sheet is read in ({exc}): free "
                f"space in {tempfile.gettempdir()}, or point TMPDIR at a folder with room"
            )
        elif isinstance(exc, (pc.CalamineError, *_UNREADABLE)):
            exc = InputError(f"{self._name} is not a readable Excel workbook ({exc})")
        with self._ready:
            if self._error is None:
                self._error = exc
            self._ready.notify_all()


def _parsers() -> int:
    """Pieces parsed at once: one on a machine of two cores or fewer (the checks take the
    other), more where there are cores to spare."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(3, (cores or 1) // 2))


@dataclass(frozen=True)
class _Book:
    """What every piece's workbook holds besides the piece: the original's parts, its
    workbook.xml down to this one sheet."""

    parts: tuple[tuple[str, bytes], ...]
    part: str  # the sheet's XML part
    head: bytes  # the sheet's XML up to and including <sheetData>
    tail: bytes  # what closes it: </sheetData></worksheet>
    leftover: bytes  # rows read with the head
    piece_bytes: int


def open_pieces(
    path: Path,
    part: str,
    piece_bytes: int,
    name: str,
    parsers: int | None = None,
    short_dates: Mapping[int, str] = LOCAL_BUILTIN,
) -> Pieces | None:
    """The sheet stored in ``part`` of the xlsx at ``path``, parsed in pieces of about
    ``piece_bytes`` of XML; None when it is better (or only safely) read whole."""
    if piece_bytes <= 0 or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        tempfile.TemporaryFile().close()  # the pieces go there: read whole if they cannot
    except OSError:
        return None
    try:
        source = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None
    try:
        book = _book(source, part, piece_bytes)
        if book is None:
            source.close()
            return None
        stream = source.open(part)
        head, leftover = _head(stream)
    except (zipfile.BadZipFile, zlib.error, OSError, KeyError, ValueError, EOFError):
        source.close()
        return None  # calamine, reading it whole, says what is wrong
    if head is None:
        stream.close()
        source.close()
        return None
    root = _ROOT.search(head)
    assert root is not None  # _head found it
    tail = b"</sheetData></" + root.group(1) + b">"
    book = _Book(book.parts, part, head, tail, leftover, book.piece_bytes)
    return Pieces(source, stream, book, name, parsers, short_dates)


def _book(source: zipfile.ZipFile, part: str, piece_bytes: int) -> _Book | None:
    """What each piece's workbook holds besides the piece (None: the workbook is not
    one this module can cut safely, or the sheet is too small to be worth it)."""
    import posixpath
    from xml.etree import ElementTree
    from xml.sax.saxutils import quoteattr

    names = set(source.namelist())
    try:
        workbook = read_member(source, "xl/workbook.xml")
        rels_part = member(source, "xl/_rels/workbook.xml.rels")
        relations = list(ElementTree.fromstring(source.read(rels_part)))
    except (KeyError, ElementTree.ParseError):
        return None

    def resolved(target: str) -> str:
        path = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        return member(source, posixpath.normpath(path))

    ours = [r for r in relations if resolved(r.get("Target", "")) == part and r.get("Id")]
    # the sheet's cells need only the styles (dates, formats) and the shared strings
    shared = [r for r in relations if r.get("Type", "").endswith(("/styles", "/sharedStrings"))]
    if len(ours) != 1:
        return None
    # and the parts calamine reads by their fixed names, whatever the relations say
    fixed = {member(source, n) for n in ("xl/sharedStrings.xml", "xl/styles.xml")}
    wanted = ({resolved(r.get("Target", "")) for r in shared} | fixed) & names
    texts = sum(
        source.getinfo(n).file_size for n in wanted if n.lower().endswith("sharedstrings.xml")
    )
    piece_bytes = max(piece_bytes, _SHARED_TEXT_SHARE * texts)
    if source.getinfo(part).file_size < 2 * piece_bytes:
        return None  # one piece: nothing to gain
    sheet_id = str(ours[0].get("Id"))
    sheets = _SHEETS.search(workbook)
    if sheets is None:
        return None
    ours_tag = [
        tag
        for tag in _SHEET.findall(workbook, sheets.start(), sheets.end())
        if re.search(
            rb"""\b(?:[\w.-]+:)?id=["']""" + re.escape(sheet_id.encode()) + rb"""["']""", tag
        )
    ]
    if len(ours_tag) != 1:
        return None
    workbook = b"".join(
        (
            workbook[: sheets.start()],
            sheets.group(1),
            ours_tag[0],
            sheets.group(2),
            workbook[sheets.end() :],
        )
    )
    rels = "".join(
        f"<Relationship Id={quoteattr(r.get('Id', ''))} Type={quoteattr(r.get('Type', ''))} "
        f"Target={quoteattr(r.get('Target', ''))}/>"
        for r in [*ours, *shared]
    )
    parts = [
        ("xl/workbook.xml", workbook),
        (
            "xl/_rels/workbook.xml.rels",
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
                f'xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}'
                "</Relationships>"
            ).encode(),
        ),
    ]
    package = {member(source, n) for n in ("[Content_Types].xml", "_rels/.rels")}
    for name in sorted(wanted | (package & names)):
        parts.append((name, source.read(name)))
    return _Book(tuple(parts), part, b"", b"", b"", piece_bytes)


def _head(stream: IO[bytes]) -> tuple[bytes | None, bytes]:
    """The sheet's XML up to and including ``<sheetData>``, and the bytes read past it;
    None when there is no such tag near the start (or a prefixed, namespaced one)."""
    data = b""
    while len(data) < _HEAD_LIMIT:
        block = stream.read(1 << 16)
        if not block:
            break
        data += block
        at = data.find(_SHEET_DATA)
        if at >= 0:
            end = at + len(_SHEET_DATA)
            if _ROOT.search(data, 0, at) is None:
                return None, b""
            return data[:end], data[end:]
    return None, b""


def _cut(stream: IO[bytes], book: _Book, block_size: int = _BLOCK) -> Iterator[bytes]:
    """The sheet's rows, in XML pieces of about ``book.piece_bytes``: each cut before a
    ``<row`` that names its number, so each piece's rows keep their sheet numbers."""
    data, start, ended = book.leftover, 0, False
    searched = 0  # data before this holds no </sheetData (each byte is looked at once)
    while True:
        end = data.find(_SHEET_DATA_END, max(start, searched))
        searched = len(data) - len(_SHEET_DATA_END) + 1 if end < 0 else end
        cut = _cut_point(data, start, book.piece_bytes, end if end >= 0 else len(data))
        if cut is not None:
            yield data[start:cut]
            start = cut
        elif end >= 0:
            yield data[start:end]
            return
        elif ended:
            raise ValueError("the sheet's XML ends before </sheetData>")
        else:
            block = stream.read(block_size)
            ended = not block
            data, start, searched = data[start:] + block, 0, max(0, searched - start)


def _cut_point(data: bytes, start: int, size: int, limit: int) -> int | None:
    """Where, from ``size`` bytes past ``start`` up to ``limit``, a numbered row begins
    (outside a comment or a CDATA section, which may hold anything)."""
    at = start + size
    while (row := _ROW.search(data, at, limit)) is not None:
        at = row.start()
        close = data.find(b">", at, limit)
        if close < 0:
            return None
        if _NUMBERED_ROW.match(data, at, close + 1) and not _in_markup(data, start, at):
            return at
        at = close
    return None


def _in_markup(data: bytes, start: int, at: int) -> bool:
    """Whether ``at`` falls inside a comment or a CDATA section opened after ``start``."""
    if data.find(b"!", start, at) < 0:
        return False  # the usual case: one memchr-fast look, where two finds would be needed
    for opening, closing in ((b"<!--", b"-->"), (b"<![CDATA[", b"]]>")):
        opened = data.rfind(opening, start, at)
        if opened >= 0 and data.rfind(closing, opened, at) < 0:
            return True
    return False


class _NoRoomError(OSError):
    """A piece could not be written to the temporary folder."""


_UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


def _write(book: _Book, rows: bytes) -> IO[bytes]:
    """One piece's workbook, stored (not compressed), in an unnamed temporary file."""
    try:
        return _stored(book, rows)
    except OSError as exc:
        raise _NoRoomError(exc.strerror or str(exc)) from exc


def _stored(book: _Book, rows: bytes) -> IO[bytes]:
    handle = tempfile.TemporaryFile()  # noqa: SIM115 (handed to the parser, which closes it)
    try:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as z:
            for name, data in book.parts:
                z.writestr(name, data)
            with z.open(book.part, "w") as sheet:  # written as it is (no joined copy)
                sheet.write(book.head)
                sheet.write(rows)
                sheet.write(book.tail)
        handle.flush()
    except BaseException:
        handle.close()
        raise
    return handle
