"""CSV, TSV and TXT files: the encoding (UTF-8 with or without BOM, UTF-16, else
cp1252), the delimiter, and two readers of the same records: pyarrow in 1 MB blocks (the
fast one) and the csv module (the reference, and the fallback where pyarrow refuses)."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, NoReturn

from leadsync.errors import InputError
from leadsync.reader.cells import Chunk, header_names
from leadsync.reader.table import Source, Table, text_blocks

if TYPE_CHECKING:
    import pyarrow as pa

TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_CHARS = 64 * 1024
ZIP_MAGIC = b"PK\x03\x04"
# README "Limits": the header line. 20,000 columns of 50-character names is 1 MB; a
# longer first line is not a header (a 300 MB one took 5 GB to read and report).
MAX_HEADER_BYTES = 1 << 20
# Excel's delimiter line: "sep=;" alone on the first line says what splits the cells,
# and Excel does not show it as a row (the header below it is row 1)
_SEP_LINE = re.compile(r'sep=([^"\r\n])\r?\n?')

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def detect_encoding(path: Path) -> str:
    """UTF-16 or UTF-8 (with or without BOM) if the bytes say so, else cp1252."""
    return _sniff_bytes(path)[0]


def _sniff_bytes(path: Path) -> tuple[str, int | None]:
    """The encoding (see :func:`detect_encoding`) and how many ``"`` bytes the file holds
    (None for UTF-16), from one pass over its bytes. A file that holds UTF-8 text and
    bytes that are not UTF-8 is refused (:func:`_refuse_mixed`)."""
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", None
        fh.seek(0)
        scan = _scan_bytes(fh)
        if not scan.valid:
            if scan.utf8_text:
                fh.seek(0)
                _refuse_mixed(fh, path)
            return "cp1252", scan.quotes
    return ("utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"), scan.quotes


def _refuse_mixed(fh: IO[bytes], path: Path) -> NoReturn:
    """Raise :class:`InputError` for a file that holds UTF-8 text but is not UTF-8
    throughout: read as cp1252, every UTF-8 name would go out garbled (``ZoÃ«``), and
    read as UTF-8 the rest would; neither is sent. The message names the first line that
    is not UTF-8 (found here, on the error path only)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    position = 0
    while block := fh.read(1 << 20):
        try:
            decoder.decode(block)
        except UnicodeDecodeError as exc:
            offset = position + max(0, exc.start)
            line = 1 + _lines_before(fh, offset)
            raise InputError(
                f"{path.name} is UTF-8 text but line {line} is not (byte {offset:,}): "
                "two encodings in one file (an export appended to another?) would send "
                "garbled names; save the whole file again as UTF-8"
            ) from None
        position += len(block)
    raise AssertionError("_scan_bytes found bytes that are not UTF-8")  # pragma: no cover


def _lines_before(fh: IO[bytes], offset: int) -> int:
    """How many line breaks stand before byte ``offset`` (the file position is moved)."""
    fh.seek(0)
    count = 0
    left = offset
    while left > 0 and (block := fh.read(min(1 << 20, left))):
        count += block.count(b"\n")
        left -= len(block)
    return count


class _ByteScan(NamedTuple):
    valid: bool  # every byte is UTF-8
    utf8_text: bool  # well-formed non-ASCII UTF-8 is there (whether or not valid)
    quotes: int  # how many " bytes


def _scan_bytes(fh: IO[bytes]) -> _ByteScan:
    """One pass over the bytes of ``fh``: whether they are all UTF-8 (pyarrow checks 1 MB
    in ~0.3 ms, 3x faster than decoding it: a 150 MB file is checked in 0.04 s), whether
    they hold UTF-8 text, and their count of ``"`` bytes (numpy: twice as fast as
    bytes.count)."""
    import numpy as np
    import pyarrow as pa

    offsets = memoryview(bytearray(8)).cast("i")  # one string: [0, its length]
    carry = b""
    valid, utf8_text = True, False
    quotes = 0
    while block := fh.read(1 << 20):
        quotes += int(np.count_nonzero(np.frombuffer(block, np.uint8) == 0x22))
        if valid:
            data = carry + block if carry else block
            cut = _complete(data)
            offsets[1] = cut
            text = pa.StringArray.from_buffers(1, pa.py_buffer(offsets), pa.py_buffer(data))
            try:
                text.validate(full=True)
                if not utf8_text and not block.isascii():  # no copy for ASCII blocks
                    utf8_text = not data[:cut].isascii()  # a carried lead byte is not text yet
                carry = data[cut:]
                continue
            except pa.ArrowInvalid:
                valid = False
        if not utf8_text:
            # what is left once the bytes that are not UTF-8 are dropped: non-ASCII text
            # there is a well-formed UTF-8 character, which a cp1252 export almost never
            # holds (it would take text like "Ã©"). C-fast: 40 ms for 30 MB, where a
            # regex took 0.8 s
            utf8_text = not block.decode("utf-8", "ignore").isascii()
    # a sequence cut short by the end of the file is not UTF-8
    return _ByteScan(valid and not carry, utf8_text, quotes)


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


def looks_like_text(path: Path) -> bool:
    with path.open("rb") as fh:
        sample = fh.read(4096)
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    return bool(sample) and b"\x00" not in sample[:512] and not sample.startswith(ZIP_MAGIC)


def sep_line(sample: str) -> str | None:
    """The delimiter Excel's ``sep=`` first line names (``sep=;``), if the sample has one."""
    first = sample.split("\n", 1)[0] + ("\n" if "\n" in sample else "")
    match = _SEP_LINE.fullmatch(first)
    return match.group(1) if match else None


def sniff_delimiter(sample: str, suffix: str) -> str:
    """Pick the delimiter that splits the sample into the most consistent columns (or
    the one a ``sep=`` first line names)."""
    named = sep_line(sample)
    if named is not None:
        return named
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


class _TextSource(Source):
    def __init__(self, path: Path, encoding: str, delimiter: str) -> None:
        self.path, self.encoding, self.delimiter = path, encoding, delimiter
        self.width = 0  # cells in the header record
        self.above = 0  # blank records above the header (Excel shows them as rows)
        self.sep_line = False  # a "sep=;" first line, skipped (Excel does not show it)

    def records(self) -> Iterator[list[str]]:
        # cp1252 leaves five byte values undefined; replace rather than crash on them.
        errors = "replace" if self.encoding == "cp1252" else "strict"
        with self.path.open(encoding=self.encoding, errors=errors, newline="") as fh:
            if self.sep_line:
                fh.readline()
            yield from csv.reader(fh, delimiter=self.delimiter)

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        records = self.records()
        for _ in range(self.above + 1):  # the blank records, then the header
            next(records, None)
        # Excel shows one record per row: the header is row above + 1, then one a record
        yield from enumerate(records, start=self.above + 2)

    def fast_chunks(self, table: Table, size: int) -> Iterator[Chunk]:
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

    def column_text(self, table: Table, index: int, size: int) -> Iterator[pa.Array]:
        """One column through pyarrow (see :meth:`fast_chunks` for the fallback)."""
        consumed = 0
        batches = _Batches(self._arrow_reader(index) if index < self.width else None)
        for batch in batches:
            consumed += batch.num_rows
            yield batch.column(0)
        if not batches.complete:
            rest = itertools.islice(self.rows(), consumed, None)
            yield from text_blocks((c[index] if index < len(c) else "" for _, c in rest), size)

    def _arrow_reader(self, only: int | None = None) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        if self.encoding not in ("utf-8", "utf-8-sig") or self.width < 1:
            return None
        from leadsync.columnar import prepare_pyarrow

        prepare_pyarrow()
        names = [f"c{i}" for i in range(self.width)]
        try:
            return pcsv.open_csv(
                self.path,
                read_options=pcsv.ReadOptions(
                    block_size=1 << 20,
                    use_threads=False,
                    skip_rows=1 if self.sep_line else 0,  # one line, never quoted
                    # the blank records and the header, read as the parser reads records
                    # (a quoted line break in a header cell: skip_rows would skip one line)
                    skip_rows_after_names=self.above + 1,
                    column_names=names,
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
        first = consumed + self.above + 2
        numbers = range(first, first + head.num_rows)
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


def _spilled(columns: list[Any]) -> dict[int, int]:
    """Per row, how many cells beyond the last header hold something."""
    import numpy as np
    import pyarrow.compute as pc

    from leadsync.columnar import Cells, trimmed

    counts = np.zeros(len(columns[0]), dtype=np.int64)
    for c in columns:
        counts += pc.binary_length(trimmed(Cells(c))).to_numpy() > 0
    return {int(i): int(counts[i]) for i in np.flatnonzero(counts)}


def _refuse_unclosed_quote(source: _TextSource, quotes: int | None) -> None:
    """Raise :class:`InputError` when a quote opened in the file is never closed: the
    rest of the file would be read as one cell and its rows would vanish from every
    report. Quotes come in pairs in a well-formed CSV (an escaped quote is doubled), so
    an odd count says one is open (counted in the encoding pass, ~40 ms for 150 MB),
    and only then is the file parsed again to find where."""
    if quotes is None or quotes % 2 == 0:
        return  # balanced (or UTF-16, where a quote is not one byte: left to the parser)
    errors = "replace" if source.encoding == "cp1252" else "strict"
    with source.path.open(encoding=source.encoding, errors=errors, newline="") as fh:
        reader = csv.reader(fh, delimiter=source.delimiter)
        start = last_start = 1
        for _ in reader:
            last_start, start = start, reader.line_num + 1
    # a bare quote inside an unquoted cell (12" TV) is text, and makes the count odd
    # too: the file is refused only if its last record really ends inside a quote
    with source.path.open(encoding=source.encoding, errors=errors, newline="") as fh:
        tail = itertools.islice(fh, last_start - 1, None)  # lines, streamed
        try:
            for _ in csv.reader(tail, delimiter=source.delimiter, strict=True):
                pass
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                return
        else:
            return
    raise InputError(
        f'{source.path.name}: a quote (") opened on line {last_start} is never closed, so '
        "the rest of the file would be read as one cell: close it, or remove it"
    )


def _refuse_huge_header(path: Path) -> None:
    with path.open("rb") as fh:
        head = fh.read(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES and b"\n" not in head and b"\r" not in head:
        raise InputError(
            f"{path.name}: the first line (the header row) is longer than "
            f"{MAX_HEADER_BYTES // 2**20} MB, leadsync's limit for a header: is this a CSV "
            "export with one row per line?"
        )


# blank records looked through for the header (an export's empty first lines)
_BLANK_ABOVE_MAX = 100


def _header_record(source: _TextSource) -> tuple[list[str] | None, int]:
    """The header, the first record with a value (as a workbook's is its first row with
    a value), and how many blank records stand above it."""
    for above, record in enumerate(itertools.islice(source.records(), _BLANK_ABOVE_MAX + 1)):
        if any(cell.strip() for cell in record):
            return record, above
    return None, 0


def open_text(path: Path, suffix: str) -> Table:
    _refuse_huge_header(path)
    encoding, quotes = _sniff_bytes(path)
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as fh:
            sample = fh.read(_SNIFF_CHARS)
        delimiter = sniff_delimiter(sample, suffix)
        source = _TextSource(path, encoding, delimiter)
        source.sep_line = sep_line(sample) is not None
        header, source.above = _header_record(source)
    except csv.Error as exc:
        raise InputError(f"{path.name} is not a readable CSV file: {exc}") from None
    except UnicodeError as exc:
        raise InputError(f"{path.name}: cannot decode the text ({exc})") from None
    if header is None or not any(h.strip() for h in header):
        raise InputError(f"{path.name} is empty: expected a header row, then one row per lead")
    source.width = len(header)
    _refuse_unclosed_quote(source, quotes)
    table = Table(
        path=path,
        format="csv",
        headers=header_names(header),
        header_row=source.above + 1,
        encoding=encoding,
        delimiter=delimiter,
        source=source,
    )
    return table
