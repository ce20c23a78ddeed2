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
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadsync.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

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
    """A block of consecutive rows.

    ``frame`` holds one column per header position (labelled 0..n-1, so duplicate
    headers survive) with object dtype; ``row_numbers`` are the spreadsheet rows.
    ``extra_cells`` maps a position in the chunk to the count of non-blank cells that
    stood beyond the last header (a ragged CSV row).
    """

    frame: pd.DataFrame
    row_numbers: list[int]
    extra_cells: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.row_numbers)


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

    def chunks(self, size: int) -> Iterator[Chunk]:
        """Yield the data rows in chunks of at most ``size`` rows."""
        import pandas as pd

        width = len(self.headers)
        numbers: list[int] = []
        block: list[list[Any]] = []
        extra: dict[int, int] = {}
        for number, cells in self._rows():
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
                yield Chunk(pd.DataFrame(block, columns=range(width), dtype=object), numbers, extra)
                numbers, block, extra = [], [], {}
        if block:
            yield Chunk(pd.DataFrame(block, columns=range(width), dtype=object), numbers, extra)

    def column(self, index: int) -> Iterator[Any]:
        """Yield one column's cells, row by row (a cheap pass, e.g. to find duplicate ids)."""
        for _, cells in self._rows():
            yield cells[index] if index < len(cells) else ""


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
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while block := fh.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"


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
        width = len(rows[0])
        same = sum(1 for r in rows if len(r) == width) / len(rows)
        score = (width > 1, same, width)
        if score > best_score:
            best, best_score = delim, score
    return best


class _TextSource:
    def __init__(self, path: Path, encoding: str, delimiter: str) -> None:
        self.path, self.encoding, self.delimiter = path, encoding, delimiter

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
    return Table(
        path=path,
        format="csv",
        headers=_header_names(header),
        header_row=1,
        encoding=encoding,
        delimiter=delimiter,
        _rows=source.rows,
    )


# -- workbooks ----------------------------------------------------------------------


def _open_excel(path: Path, sheet: str | None) -> Table:
    import python_calamine as pc

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

    def excel_rows() -> Iterator[tuple[int, list[Any]]]:
        it = worksheet.iter_rows()
        for _ in range(skip + 1):
            next(it, None)
        for offset, cells in enumerate(it, start=1):
            yield header_row + offset, [normalise_cell(c) for c in cells]

    table = Table(
        path=path,
        format="excel",
        headers=headers,
        header_row=header_row,
        first_column=start_col,
        sheet=name,
        _rows=excel_rows,
    )
    uncached = count_uncached_formulas(path)
    if uncached:
        table.notices.append(
            f"{path.name} has {uncached} formula cell(s) with no saved result (written by a "
            "program that does not calculate): they were read as blank. Open the file in "
            "Excel and save it to store the results"
        )
    return table


_UNCACHED_FORMULA = re.compile(rb"(?:</f>|<f[^>]*/>)\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>")


def count_uncached_formulas(path: Path) -> int:
    """Formula cells stored without their last result (calamine reads those as blank)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            if _saved_by_a_calculating_program(z):
                return 0  # Excel and LibreOffice store every formula's result
            count = 0
            for name in z.namelist():
                if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                    continue
                with z.open(name) as fh:
                    tail = b""
                    while block := fh.read(1 << 22):
                        data = tail + block
                        # a match ending inside the carried-over tail was counted already
                        count += sum(
                            1 for m in _UNCACHED_FORMULA.finditer(data) if m.end() > len(tail)
                        )
                        tail = data[-256:]
            return count
    except (zipfile.BadZipFile, OSError, KeyError):
        return 0


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
