"""Cells and chunks: a block of rows held column by column, and what a user sees in
a cell (trimmed text, whole numbers without ``.0``, Excel's error texts)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from leadsync.columnar import Cells

_MAX_EXACT_FLOAT = 2**53


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
    date1904: bool = False  # a workbook in the 1904 date system: its serials count from 1904

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
        return Chunk(columns, numbers, extra, self.date1904)

    def cells(self, index: int) -> Cells:
        """One column as the text fields read it, for the columnar checks (cached): a
        text as it is, any other cell as :func:`cell_text` gives it."""
        return self._cells(index, display=False)

    def number_cells(self, index: int) -> Cells:
        """:meth:`cells`, but a formatted number as its number (the lead id: a cell
        ``1001`` shown ``001001`` is lead 1001)."""
        return self._cells(index, display=None)

    def value_cells(self, index: int) -> Cells:
        """:meth:`cells` for a number, flag or date field: what the cell's value reads as
        (a formatted number's number, a date-time cell in ISO form, a flag cell as
        true/false), so typed cells take the columnar path too."""
        return self._cells(index, display="value")

    def display_cells(self, index: int) -> Cells:
        """One column as the user sees it, for the reports (cached)."""
        return self._cells(index, display=True)

    def _cells(self, index: int, *, display: bool | str | None) -> Cells:
        import pyarrow as pa

        from leadsync.columnar import Cells, prepare_pyarrow

        prepare_pyarrow()
        cache = self.__dict__.setdefault("_cache", {})
        found = cache.get((index, display))
        if found is not None:
            return found  # type: ignore[no-any-return]
        column = self.columns[index]
        kinds = {str} if not isinstance(column, list) else set(map(type, column))
        if kinds <= _SAME_IN_EVERY_VIEW:
            # what the checks read is what the user sees: one Cells for every view (text,
            # whole numbers and dates read alike in each: ids, office ids, date cells)
            if kinds <= {str}:
                cells = Cells(pa.array(column, pa.string()))
            elif kinds == {int}:  # whole numbers (calamine's, within 2**53): Arrow's digits
                cells = Cells(pa.array(column, pa.int64()).cast(pa.string()))
            else:
                texts = [v if v.__class__ is str else _triage_text(v) for v in column]
                cells = Cells(pa.array(texts, pa.string()))
            for view in (False, True, None, "value"):
                cache[(index, view)] = cells
            return cells
        convert = _CONVERTERS[display]
        # every view reads a text cell as it is: only the other cells are converted
        texts = [v if v.__class__ is str else convert(v) for v in column]
        cache[(index, display)] = cells = Cells(pa.array(texts, pa.string()))
        return cells


class Shown(str):
    """A number cell as its number format shows it (``00007``, ``£350,000``, a date as
    ``12/07/2025``); ``value`` is the number itself (a date cell's date, an ods's time
    cell's time). Text fields send the text, as Excel's "Save as CSV" writes it; numeric
    and date fields and the lead id take the value."""

    __slots__ = ("value",)
    value: float | dt.date | dt.time

    def __new__(cls, text: str, value: float | dt.date | dt.time) -> Shown:
        self = super().__new__(cls, text)
        self.value = value
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Shown, (str(self), self.value))  # report.xlsx may be written in a process


# What the reader puts back where calamine says nothing: sheet row number -> [(0-based
# column, a text: an error cell's, a number format's code, or what a cell shows)]
Overlay = dict[int, list[tuple[int, str]]]

_NOT_TEXT = "\x00"


def _triage_text(value: Any) -> str:
    kind = type(value)
    if kind is str or kind is Shown:
        # a formatted number is checked as the text it shows: a text field sends that; a
        # number field whose text is not plainly the number ("1,213") goes row by row
        return str.__str__(value)
    if kind is int:
        return str(value)
    if kind is dt.date:
        return value.isoformat()  # type: ignore[no-any-return]
    if value is None:
        return ""
    return _NOT_TEXT


def _field_text(value: Any) -> str:
    """A cell as a text field reads it: a text as it is (the checks trim it), any other
    cell as :func:`cell_text` (a float, a flag, a date-time, a time or a duration cell in
    a question or meta column takes the columnar path too)."""
    kind = type(value)
    if kind is str or kind is Shown:
        return str.__str__(value)
    return "" if value is None else cell_text(value)


def _number_text(value: Any) -> str:
    return _triage_text(value.value if value.__class__ is Shown else value)


def _value_text(value: Any) -> str:
    """A cell as the text of its value, for the number, flag and date fields: a formatted
    number's number, a date-time in ISO form, a flag as true/false, a float as its digits
    (their conversions read these texts as they read the values)."""
    if value.__class__ is Shown:
        value = value.value
    kind = type(value)
    if kind is dt.datetime:
        return cell_text(value)  # the text the date conversion reads a date-time cell as
    if kind is bool:
        return "true" if value else "false"
    if kind is float and abs(value) < 1e15:  # (NaN and infinities are not)
        # a whole float as its digits; another as the text a CSV of it holds (an Excel
        # serial with a time, 45850.5625, is a date-time)
        return str(int(value)) if value.is_integer() else cell_text(value)
    return _triage_text(value)


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
    if text in EXCEL_ERRORS:
        return text
    # LibreOffice shows some errors by number: Err:502 (an invalid argument)
    return value.strip() if text[:4] == "ERR:" and text[4:].isdigit() else None


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
        return float_text(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):  # a duration cell ([h]:mm:ss): not "1 day, 6:00:00"
        return duration_text(value)
    return str(value).strip()


def float_text(value: float) -> str:
    """A number cell's float as a sheet shows it under General, to 15 significant
    digits: ``0.1``, ``1E+20`` (Excel and LibreOffice write the exponent's E uppercase)."""
    return format(value, ".15g").replace("e", "E")  # (nan and inf hold no e)


def duration_text(value: dt.timedelta) -> str:
    """A duration as Excel and LibreOffice show it under ``[h]:mm:ss``: ``30:00:00``,
    ``0:05:30`` (to the second, as they round it)."""
    seconds = round(value.total_seconds())
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{'-' if seconds < 0 else ''}{hours}:{minutes:02}:{secs:02}"


def present(value: Any) -> bool:
    return not (value is None or (isinstance(value, str) and not value.strip()))


def all_text(column: list[Any]) -> bool:
    try:
        "".join(column)  # a quick C-level check: fails on the first cell that is not text
    except TypeError:
        return False
    return True


def whole_floats(column: list[Any]) -> list[Any]:
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


def header_text(value: Any) -> str:
    value = normalise_cell(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return "" if value is None else str(value)


def header_names(cells: list[Any]) -> tuple[str, ...]:
    """Header texts, trimmed; trailing blank header cells dropped, inner ones named."""
    names = [header_text(c).strip() for c in cells]
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


def column_index(letters: bytes) -> int:
    """b"A" -> 0, b"Z" -> 25, b"AA" -> 26."""
    index = 0
    for ch in letters:
        index = index * 26 + ch - 64
    return index - 1


# cell types whose text is the same in every view of Chunk._cells: the text itself, a
# whole number's digits, a date's ISO form (a float, a flag, a date-time or a formatted
# number reads one way for the user and another for the checks)
_SAME_IN_EVERY_VIEW = frozenset({str, int, dt.date})

# Chunk._cells: a column as the user sees it (True), for the checks (False), or with a
# formatted number as its number (None)
_CONVERTERS: dict[bool | str | None, Any] = {
    True: display_text,
    False: _field_text,
    None: _number_text,
    "value": _value_text,
}
