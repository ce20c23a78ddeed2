"""Reader stage: open a CSV/TSV/TXT or Excel file and yield its rows lazily, in chunks.

Every row carries its spreadsheet row number as the user sees it (header = row 1 for a
CSV; the real Excel row for a workbook). No value passes through a float: CSV cells stay
text, and whole numbers from a workbook come back as ``int`` (``375``, not ``375.0``).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import itertools
import queue
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from leadsync.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from leadsync.columnar import Cells

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_CHARS = 64 * 1024
_ZIP_MAGIC = b"PK\x03\x04"
_CFB_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls, or an encrypted (password) workbook
_MAX_EXACT_FLOAT = 2**53

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Chunk:
    """A block of consecutive rows, held column by column.

    ``columns`` has one entry per header position (duplicate headers survive): a
    pyarrow string array when the fast CSV reader produced the chunk, else a list of
    cells. ``row_numbers`` are the spreadsheet rows. ``extra_cells`` maps a position in
    the chunk to the count of non-blank cells that stood beyond the last header (a
    ragged CSV row).
    """

    columns: list[Any]
    row_numbers: Sequence[int]
    extra_cells: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_numbers)

    def values(self, index: int) -> list[Any]:
        """One column's cells as Python values."""
        column = self.columns[index]
        return column if isinstance(column, list) else column.to_pylist()

    @property
    def frame(self) -> pd.DataFrame:
        """The chunk as an object DataFrame, columns labelled 0..n-1."""
        import pandas as pd

        data = {j: self.values(j) for j in range(len(self.columns))}
        return pd.DataFrame(data, columns=range(len(self.columns)), dtype=object)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Each row's cells, in order."""
        return zip(*(self.values(j) for j in range(len(self.columns))), strict=True)

    def take(self, positions: Sequence[int]) -> Chunk:
        """The rows at ``positions`` as a chunk of their own."""
        indices: Any = positions
        if not all(isinstance(c, list) for c in self.columns):
            import pyarrow as pa

            indices = pa.array(positions, pa.int64())  # converted once, not per column
        columns = [
            [c[i] for i in positions] if isinstance(c, list) else c.take(indices)
            for c in self.columns
        ]
        numbers = [self.row_numbers[i] for i in positions]
        extra = {k: self.extra_cells[i] for k, i in enumerate(positions) if i in self.extra_cells}
        return Chunk(columns, numbers, extra)

    def cells(self, index: int) -> Cells:
        """One column as text for the columnar checks (cached): a cell that is not text,
        a whole number or a date becomes a control character, which no check accepts
        (so its row takes the row-by-row path, which knows its type)."""
        return self._cells(index, display=False)

    def display_cells(self, index: int) -> Cells:
        """One column as the user sees it, for the reports (cached)."""
        return self._cells(index, display=True)

    def _cells(self, index: int, *, display: bool) -> Cells:
        import pyarrow as pa

        from leadsync.columnar import Cells, skip_pandas_probe

        skip_pandas_probe()
        cache = self.__dict__.setdefault("_cache", {})
        found = cache.get((index, display))
        if found is not None:
            return found  # type: ignore[no-any-return]
        column = self.columns[index]
        all_text = not isinstance(column, list) or set(map(type, column)) <= {str}
        if all_text:  # what the checks read is what the user sees: one Cells for both
            found = cache.get((index, not display))
            cells = found if found is not None else Cells(pa.array(column, pa.string()))
            cache[(index, False)] = cache[(index, True)] = cells
            return cells
        convert = display_text if display else _triage_text
        cache[(index, display)] = cells = Cells(pa.array(map(convert, column), pa.string()))
        return cells


_NOT_TEXT = "\x00"


def _triage_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return str(value)
    if kind is dt.date:
        return value.isoformat()  # type: ignore[no-any-return]
    if value is None:
        return ""
    return _NOT_TEXT


# What Excel shows in a cell whose formula failed. A CSV saved by Excel holds the text;
# a workbook holds an error cell, which python-calamine reads as blank (the reader puts
# the text back). Either way it is never a value to send.
EXCEL_ERRORS = frozenset(
    {
        "#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
        "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!",
        "#EXTERNAL!", "#PYTHON!",
    }
)  # fmt: skip


def excel_error(value: Any) -> str | None:
    """The Excel error a cell shows (``#N/A``, ``#REF!`` ...), or None."""
    if value.__class__ is not str or "#" not in value:
        return None
    text = value.strip().upper()
    return text if text in EXCEL_ERRORS else None


def display_text(value: Any) -> str:
    """A cell as text for a report: strings untouched, typed values as the user sees them."""
    return value if isinstance(value, str) else cell_text(value)


def cell_text(value: Any) -> str:
    """The text a user sees in a cell, trimmed; ``""`` for a blank cell."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value != value:  # NaN never reaches a payload
            return ""
        return format(value, ".15g")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value).strip()


@dataclass
class Table:
    """An opened input file: its headers and a way to read its rows in chunks."""

    path: Path
    format: str  # "csv" or "excel"
    headers: tuple[str, ...]
    header_row: int
    first_column: int = 0  # 0-based column of the first header (workbooks)
    sheet: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    notices: list[str] = field(default_factory=list)
    _rows: Any = None  # a callable returning an iterator over (row_number, cells)
    _arrow: Any = None  # a callable(size) yielding chunks the fast way (pyarrow, blocks)
    _arrow_column: Any = None  # a callable(index, size) yielding one column's arrays

    def chunks(self, size: int, *, fast: bool = True) -> Iterator[Chunk]:
        """Yield the data rows in chunks of at most ``size`` rows.

        ``fast`` reads a UTF-8 CSV with pyarrow and a workbook in blocks;
        ``fast=False`` always goes row by row (the reference the fast readers are
        tested against).
        """
        if fast and self._arrow is not None:
            yield from self._arrow(size)
        else:
            yield from self.python_chunks(self._rows(), size)

    def python_chunks(self, rows: Iterator[tuple[int, list[Any]]], size: int) -> Iterator[Chunk]:
        """Group ``(row_number, cells)`` into chunks: pad short rows, count spilled cells."""
        width = len(self.headers)
        numbers: list[int] = []
        block: list[list[Any]] = []
        extra: dict[int, int] = {}
        for number, cells in rows:
            if len(cells) != width:
                if len(cells) > width:
                    spill = sum(1 for c in cells[width:] if _present(c))
                    if spill:
                        extra[len(block)] = spill
                    cells = cells[:width]
                else:
                    cells = list(cells) + [""] * (width - len(cells))
            numbers.append(number)
            block.append(cells)
            if len(block) >= size:
                yield self._chunk(block, numbers, extra)
                numbers, block, extra = [], [], {}
        if block:
            yield self._chunk(block, numbers, extra)

    def _chunk(
        self, block: list[list[Any]], numbers: Sequence[int], extra: dict[int, int]
    ) -> Chunk:
        columns = [list(c) for c in zip(*block, strict=True)] if block and block[0] else []
        if not columns:
            columns = [[] for _ in self.headers]
        if self.format == "excel":
            # calamine gives every number as a float: 375.0 -> 375, per column, only
            # where a float is present
            columns = [
                c if _all_text(c) or float not in set(map(type, c)) else _whole_floats(c)
                for c in columns
            ]
        return Chunk(columns, numbers, extra)

    def first_rows(self, n: int) -> list[tuple[int, list[Any]]]:
        """The first ``n`` data rows as ``(row_number, cells)`` (a peek, row by row)."""
        return list(itertools.islice(self._rows(), n))

    def column(self, index: int) -> Iterator[Any]:
        """Yield one column's cells, row by row (a cheap pass, e.g. to find duplicate ids)."""
        for _, cells in self._rows():
            yield normalise_cell(cells[index]) if index < len(cells) else ""

    def column_text(self, index: int, size: int) -> Iterator[pa.Array]:
        """One column's cells as the user sees them, in pyarrow arrays of up to ``size``
        (the cheapest full pass: a UTF-8 CSV's other columns are parsed, not kept)."""
        if self._arrow_column is not None:
            yield from self._arrow_column(index, size)
        else:
            yield from _text_blocks(self.column(index), size)


def _present(value: Any) -> bool:
    return not (value is None or (isinstance(value, str) and not value.strip()))


def open_table(path: str | Path, sheet: str | None = None) -> Table:
    """Open ``path`` and read its header; raise :class:`InputError` if it cannot be read."""
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
    if suffix in EXCEL_SUFFIXES or head.startswith((_ZIP_MAGIC, _CFB_MAGIC)):
        if head.startswith((_ZIP_MAGIC, _CFB_MAGIC)) or suffix in (".xls", ".xlsb"):
            return _open_excel(p, sheet)
        if _looks_like_text(p):
            table = _open_text(p, suffix)
            table.notices.append(f"{p.name} is text, not a workbook: read it as CSV")
            return table
        raise InputError(f"{p} is not a readable Excel workbook (not a zip/xlsx file)")
    if suffix in TEXT_SUFFIXES or _looks_like_text(p):
        if sheet is not None:
            raise InputError(f"--sheet does not apply to {p.name}: it is a text file")
        return _open_text(p, suffix)
    raise InputError(
        f"unsupported file type {suffix or '(none)'!r} for {p.name}: "
        "use .csv, .tsv, .txt, .xlsx or .xlsm"
    )


# -- text files ---------------------------------------------------------------------


def detect_encoding(path: Path) -> str:
    """UTF-16 or UTF-8 (with or without BOM) if the bytes say so, else cp1252."""
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        fh.seek(0)
        if not _valid_utf8(fh):
            return "cp1252"
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"


def _valid_utf8(fh: IO[bytes]) -> bool:
    """Whether every byte of ``fh`` is UTF-8 (pyarrow checks 1 MB in ~0.3 ms, 3x faster
    than decoding it: a 150 MB file is checked in 0.04 s)."""
    import pyarrow as pa

    offsets = memoryview(bytearray(8)).cast("i")  # one string: [0, its length]
    carry = b""
    while block := fh.read(1 << 20):
        data = carry + block if carry else block
        cut = _complete(data)
        offsets[1] = cut
        text = pa.StringArray.from_buffers(1, pa.py_buffer(offsets), pa.py_buffer(data))
        try:
            text.validate(full=True)
        except pa.ArrowInvalid:
            return False
        carry = data[cut:]
    return not carry  # a sequence cut short by the end of the file is not UTF-8


def _complete(data: bytes) -> int:
    """Where the last whole UTF-8 sequence of ``data`` ends (a block may end inside a
    character; its first bytes wait for the next block)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:  # ASCII: whole
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence all here?
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if length <= back else len(data) - back
    return len(data)  # only continuation bytes: let validation judge them


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as fh:
        sample = fh.read(4096)
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    return bool(sample) and b"\x00" not in sample[:512] and not sample.startswith(_ZIP_MAGIC)


def sniff_delimiter(sample: str, suffix: str) -> str:
    """Pick the delimiter that splits the sample into the most consistent columns."""
    if suffix == ".tsv":
        return "\t"
    lines = sample.splitlines(keepends=True)
    if len(sample) >= _SNIFF_CHARS and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    text = "".join(lines)
    best, best_score = ",", (False, 0.0, 0)
    for delim in _DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(text), delimiter=delim) if r]
        except csv.Error:
            continue
        if not rows:
            continue
        # the most common width, not the first row's: a title line above the header
        # (one cell whatever the delimiter) must not decide
        widths = Counter(len(r) for r in rows)
        width, count = max(widths.items(), key=lambda item: (item[1], item[0]))
        score = (width > 1, count / len(rows), width)
        if score > best_score:
            best, best_score = delim, score
    return best


class _TextSource:
    def __init__(self, path: Path, encoding: str, delimiter: str) -> None:
        self.path, self.encoding, self.delimiter = path, encoding, delimiter
        self.width = 0  # cells in the header record

    def records(self) -> Iterator[list[str]]:
        # cp1252 leaves five byte values undefined; replace rather than crash on them.
        errors = "replace" if self.encoding == "cp1252" else "strict"
        with self.path.open(encoding=self.encoding, errors=errors, newline="") as fh:
            yield from csv.reader(fh, delimiter=self.delimiter)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        records = self.records()
        next(records, None)  # header
        # Excel shows one record per row, so row = record index + 2 (header = row 1).
        yield from enumerate(records, start=2)

    def arrow_chunks(self, table: Table, size: int) -> Iterator[Chunk]:
        """The fast reader: pyarrow parses the file in 1 MB blocks (memory stays flat).

        It reads the same records as the csv module (quoted line breaks included, an
        empty line is a blank row). Where it cannot (a row with more or fewer cells than
        the header, a quirk pyarrow refuses), the rows it delivered stand and the csv
        module reads on from the next record: the file is never lost.
        """

        width = len(table.headers)
        consumed = 0
        pending: list[Any] = []  # record batches not yet yielded
        buffered = 0
        batches = _Batches(self._arrow_reader())
        for batch in batches:
            pending.append(batch)
            buffered += batch.num_rows
            while buffered >= size:
                chunk, pending, buffered = self._cut(pending, size, consumed, width)
                consumed += len(chunk)
                yield chunk
        while buffered:
            chunk, pending, buffered = self._cut(pending, min(size, buffered), consumed, width)
            consumed += len(chunk)
            yield chunk
        if not batches.complete:  # fall back from the first record pyarrow did not deliver
            rest = itertools.islice(self.rows(), consumed, None)
            yield from table.python_chunks(rest, size)

    def arrow_column(self, index: int, size: int) -> Iterator[pa.Array]:
        """One column through pyarrow (see :meth:`arrow_chunks` for the fallback)."""
        consumed = 0
        batches = _Batches(self._arrow_reader(index) if index < self.width else None)
        for batch in batches:
            consumed += batch.num_rows
            yield batch.column(0)
        if not batches.complete:
            rest = itertools.islice(self.rows(), consumed, None)
            yield from _text_blocks((c[index] if index < len(c) else "" for _, c in rest), size)

    def _arrow_reader(self, only: int | None = None) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        if self.encoding not in ("utf-8", "utf-8-sig") or self.width < 1:
            return None
        from leadsync.columnar import skip_pandas_probe

        skip_pandas_probe()
        names = [f"c{i}" for i in range(self.width)]
        try:
            return pcsv.open_csv(
                self.path,
                read_options=pcsv.ReadOptions(
                    block_size=1 << 20, use_threads=False, skip_rows=1, column_names=names
                ),
                parse_options=pcsv.ParseOptions(
                    delimiter=self.delimiter, newlines_in_values=True, ignore_empty_lines=False
                ),
                convert_options=pcsv.ConvertOptions(
                    include_columns=None if only is None else [names[only]],
                    column_types={n: pa.string() for n in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowException, OSError):
            return None

    def _cut(
        self, pending: list[Any], size: int, consumed: int, width: int
    ) -> tuple[Chunk, list[Any], int]:
        import pyarrow as pa

        data = pa.Table.from_batches(pending)
        head, tail = data.slice(0, size), data.slice(size)
        head = head.combine_chunks()
        columns = [
            head.column(j).chunk(0) if head.column(j).num_chunks else pa.array([], pa.string())
            for j in range(head.num_columns)
        ]
        extra: dict[int, int] = {}
        if len(columns) > width:
            extra = _spilled(columns[width:])
            columns = columns[:width]
        numbers = range(consumed + 2, consumed + 2 + head.num_rows)
        return Chunk(columns, numbers, extra), tail.to_batches(), tail.num_rows


class _Batches:
    """A pyarrow CSV reader's record batches; ``complete`` once it read to the end
    (it stays False when there was no reader, or pyarrow refused a block)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.complete = False

    def __iter__(self) -> Iterator[Any]:
        import pyarrow as pa

        while self.reader is not None:
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                self.complete = True
                return
            except (pa.ArrowInvalid, pa.ArrowException):
                return
            yield batch


def _text_blocks(cells: Iterator[Any], size: int) -> Iterator[pa.Array]:
    import pyarrow as pa

    from leadsync.columnar import skip_pandas_probe

    skip_pandas_probe()
    while block := list(itertools.islice(cells, size)):
        yield pa.array(map(display_text, block), pa.string())


def _spilled(columns: list[Any]) -> dict[int, int]:
    """Per row, how many cells beyond the last header hold something."""
    import numpy as np
    import pyarrow.compute as pc

    from leadsync.columnar import Cells, trimmed

    counts = np.zeros(len(columns[0]), dtype=np.int64)
    for c in columns:
        counts += pc.binary_length(trimmed(Cells(c))).to_numpy() > 0
    return {int(i): int(counts[i]) for i in np.flatnonzero(counts)}


def _open_text(path: Path, suffix: str) -> Table:
    encoding = detect_encoding(path)
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as fh:
            sample = fh.read(_SNIFF_CHARS)
        delimiter = sniff_delimiter(sample, suffix)
        source = _TextSource(path, encoding, delimiter)
        header = next(source.records(), None)
    except csv.Error as exc:
        raise InputError(f"{path.name} is not a readable CSV file: {exc}") from None
    except UnicodeError as exc:
        raise InputError(f"{path.name}: cannot decode the text ({exc})") from None
    if header is None or not any(h.strip() for h in header):
        raise InputError(f"{path.name} is empty: expected a header row, then one row per lead")
    source.width = len(header)
    table = Table(
        path=path,
        format="csv",
        headers=_header_names(header),
        header_row=1,
        encoding=encoding,
        delimiter=delimiter,
        _rows=source.rows,
    )
    table._arrow = lambda size: source.arrow_chunks(table, size)
    table._arrow_column = source.arrow_column
    return table


# -- workbooks ----------------------------------------------------------------------


def _open_excel(path: Path, sheet: str | None) -> Table:
    import python_calamine as pc

    # the sheets are scanned for formulas without a result and for error cells while
    # calamine reads them (both mostly outside the GIL: 1.49 s instead of 1.63 s for 100k)
    scanning = in_thread(scan_sheets, path, name="leadsync-sheet-scan")
    try:
        workbook = pc.CalamineWorkbook.from_path(str(path))
        name = _pick_sheet(workbook, sheet, path)
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
        if any(_present(c) for c in cells):
            header = cells
            break
        skip += 1
    if header is None:
        raise InputError(f"sheet {name!r} of {path.name} is empty: expected a header row")
    headers = _header_names([_text(c) for c in header])
    header_row = start_row + 1

    scan = scanning.result()
    errors = scan.errors.get(scan.parts.get(name, ""), {})

    def data_rows() -> Iterator[list[Any]]:
        """The sheet's rows after the header (error cells as the text Excel shows)."""
        rows = itertools.islice(worksheet.iter_rows(), skip + 1, None)
        return _with_errors(rows, errors, header_row + 1, start_col) if errors else rows

    def excel_rows() -> Iterator[tuple[int, list[Any]]]:
        return enumerate(data_rows(), start=header_row + 1)

    def excel_chunks(size: int) -> Iterator[Chunk]:
        # calamine gives every row the range's width: whole blocks, no per-row work
        it = data_rows()
        number = header_row + 1
        width = len(headers)
        while block := list(itertools.islice(it, size)):
            numbers = range(number, number + len(block))
            if {len(r) for r in block} == {width}:
                yield table._chunk(block, numbers, {})
            else:
                yield from table.python_chunks(zip(numbers, block, strict=True), size)
            number += len(block)

    table = Table(
        path=path,
        format="excel",
        headers=headers,
        header_row=header_row,
        first_column=start_col,
        sheet=name,
        _rows=excel_rows,
    )
    table._arrow = excel_chunks
    if scan.uncached:
        table.notices.append(
            f"{path.name} has {scan.uncached} formula cell(s) with no saved result (written "
            "by a program that does not calculate): they were read as blank. Open the file "
            "in Excel and save it to store the results"
        )
    return table


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


@dataclass
class SheetScan:
    """What calamine does not say about a workbook's sheets."""

    uncached: int = 0  # formula cells stored without a result (read as blank)
    # sheet XML part -> row number -> [(0-based column, the error Excel shows)]
    errors: dict[str, dict[int, list[tuple[int, str]]]] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)  # sheet name -> its XML part


_UNCACHED_FORMULA = re.compile(rb"(?:</f>|<f[^>]*/>)\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>")
_CELL_TAG = re.compile(rb"<(?:[\w.-]+:)?c\s")
_CELL_END = re.compile(rb"</(?:[\w.-]+:)?c>")
_CELL_REF = re.compile(rb"""\sr=["']([A-Z]{1,3})([0-9]{1,7})["']""")
_CELL_VALUE = re.compile(rb"<(?:[\w.-]+:)?v>([^<]*)</(?:[\w.-]+:)?v>")
_CARRY = 1 << 12  # bytes carried between blocks: more than a formula's or a cell's tail


def scan_sheets(path: Path) -> SheetScan:
    """Count formulas stored without a result and find error cells (calamine reads both
    as blank), one streaming pass over each sheet's XML."""
    import zipfile

    scan = SheetScan()
    try:
        with zipfile.ZipFile(path) as z:
            # Excel and LibreOffice store every formula's result
            formulas = not _saved_by_a_calculating_program(z)
            scan.parts = _sheet_parts(z)
            for name in z.namelist():
                if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                    with z.open(name) as fh:
                        errors = _scan_part(fh, scan, formulas)
                    if errors:
                        scan.errors[name] = errors
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        pass  # calamine says what is wrong with the file
    return scan


def _scan_part(
    fh: Any, scan: SheetScan, formulas: bool, block_size: int = 1 << 22
) -> dict[int, list[tuple[int, str]]]:
    """One sheet's error cells (row -> [(column, text)]); adds its uncached formulas."""
    errors: dict[int, list[tuple[int, str]]] = {}
    data = b""
    done = 0  # bytes of data already looked at for error cells
    while block := fh.read(block_size):
        kept = len(data)
        data += block
        if formulas and (b"<f" in data or b"</f>" in data):
            # a match ending inside the carried-over bytes was counted already
            scan.uncached += sum(1 for m in _UNCACHED_FORMULA.finditer(data) if m.end() > kept)
        done = _find_errors(data, done, errors)
        cut = max(0, min(done, len(data) - _CARRY))
        data, done = data[cut:], done - cut
    return errors


def _find_errors(data: bytes, start: int, errors: dict[int, list[tuple[int, str]]]) -> int:
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
            column = _column_index(ref.group(1).decode())
            errors.setdefault(int(ref.group(2)), []).append((column, text or "#N/A"))
        resume = max(resume, end.end())
    return resume


def _error_types(data: bytes, start: int) -> list[int]:
    """Where ``t="e"`` (an error cell's type) stands after a space, in order. bytes.find
    is ~8x faster than a regex here, and most sheets have none."""
    hits = []
    for needle in (b't="e"', b"t='e'"):
        at = data.find(needle, start)
        while at >= 0:
            if at > 0 and data[at - 1 : at].isspace():
                hits.append(at)
            at = data.find(needle, at + 5)
    return sorted(hits)


def _column_index(letters: str) -> int:
    """A -> 0, Z -> 25, AA -> 26."""
    index = 0
    for ch in letters:
        index = index * 26 + ord(ch) - 64
    return index - 1


def _sheet_parts(z: Any) -> dict[str, str]:
    """Sheet name -> the XML part that holds it, from the workbook and its relations."""
    import posixpath
    from xml.etree import ElementTree

    ns_rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    try:
        book = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return {}
    targets = {r.get("Id"): r.get("Target", "") for r in rels}
    parts = {}
    for sheet in book.iter():
        if sheet.tag.rsplit("}", 1)[-1] != "sheet":
            continue
        target = targets.get(sheet.get(f"{{{ns_rel}}}id"))
        if target and sheet.get("name") is not None:
            part = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            parts[str(sheet.get("name"))] = posixpath.normpath(part)
    return parts


def _saved_by_a_calculating_program(z: Any) -> bool:
    try:
        app = z.read("docProps/app.xml")
    except KeyError:
        return False
    m = re.search(rb"<Application>([^<]*)</Application>", app)
    name = m.group(1).strip() if m else b""
    return name == b"Microsoft Excel" or name.startswith(b"LibreOffice")


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


def _all_text(column: list[Any]) -> bool:
    try:
        "".join(column)  # a quick C-level check: fails on the first cell that is not text
    except TypeError:
        return False
    return True


def _whole_floats(column: list[Any]) -> list[Any]:
    """:func:`normalise_cell` over a column, inlined (it runs for every number read)."""
    limit = _MAX_EXACT_FLOAT
    return [
        int(v) if v.__class__ is float and v.is_integer() and -limit < v < limit else v
        for v in column
    ]


def normalise_cell(value: Any) -> Any:
    """Turn a calamine value into what the user typed: whole floats become ints."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _MAX_EXACT_FLOAT:
            return int(value)
        return value
    return value


def _text(value: Any) -> str:
    value = normalise_cell(value)
    if isinstance(value, float):
        return format(value, ".15g")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return "" if value is None else str(value)


def _header_names(cells: list[Any]) -> tuple[str, ...]:
    """Header texts, trimmed; trailing blank header cells dropped, inner ones named."""
    names = [_text(c).strip() for c in cells]
    while names and not names[-1]:
        names.pop()
    return tuple(n or f"(column {column_letter(i)})" for i, n in enumerate(names))


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


_DONE = object()


def prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` in a thread, up to ``depth`` ahead: pyarrow parses the next
    block (outside the GIL) while this thread checks the current one."""
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ahead.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put((_DONE, None))
        except BaseException as exc:  # re-raised in the consumer
            ahead.put((_DONE, exc))

    thread = threading.Thread(target=run, daemon=True, name="leadsync-read")
    thread.start()
    try:
        while True:
            item, error = ahead.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()


def in_thread(function: Callable[..., Any], *args: Any, name: str) -> Future[Any]:
    """Run ``function`` in a daemon thread; its result (or exception) in the future.
    Worth it for work that mostly runs outside the GIL (hashing, zlib, calamine)."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True, name=name).start()
    return future
