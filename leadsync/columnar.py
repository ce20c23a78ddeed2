"""Byte-level facts about a column of text cells, for the columnar fast path.

The fast path (spec §9) maps, validates and reports a whole chunk column by column. Most
cells are short, plain text: for those a handful of numpy operations over the column's
UTF-8 bytes answer every question the stages ask (is it blank, does it need trimming,
does it hold control characters, must the CSV quote it, could a spreadsheet run it as a
formula). A cell these facts cannot vouch for is *not plain*, and its row goes through
the row-by-row reference path, which is the definition of the right answer.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# Per-byte flags
_BAD_CONTROL = 1  # a control character other than tab, LF, CR
_QUOTE = 2  # makes the csv module quote the field: , " CR LF
_HIGH = 4  # part of a non-ASCII character
_ESCAPE = 8  # JSON escapes it: " \ tab LF CR
_EDGE = 16  # str.strip() would remove it at either end (ASCII whitespace and controls)
_FORMULA = 32  # a spreadsheet may run a cell starting with it (see report.neutralise)

# Python's str.isspace(), in RE2 syntax (checked against Python by the tests)
PY_SPACE = r"[\t-\r\x1c-\x1f\x{85}\p{Z}]"
# A non-ASCII cell that is plain: nothing strip() would remove at the ends, no control
# characters (tab, LF, CR allowed inside), no C1 controls.
_PLAIN_RE = (
    r"^[^\x00-\x20\x7f-\x{a0}\p{Z}]"
    r"(?:[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x{9f}]*[^\x00-\x20\x7f-\x{a0}\p{Z}])?$"
)


def _table() -> np.ndarray:
    import numpy as np

    lut = np.zeros(256, dtype=np.uint8)
    for b in range(256):
        flag = 0
        if (b < 0x20 and b not in (0x09, 0x0A, 0x0D)) or b == 0x7F:
            flag |= _BAD_CONTROL
        if b in b',"\r\n':
            flag |= _QUOTE
        if b >= 0x80:
            flag |= _HIGH
        if b in b'"\\\t\n\r':
            flag |= _ESCAPE
        if b <= 0x20 or b == 0x7F:
            flag |= _EDGE
        if b in b"=+-@\t\r":
            flag |= _FORMULA
        lut[b] = flag
    return lut


class Cells:
    """One column of a chunk as a pyarrow string array plus per-cell byte facts."""

    _lut: np.ndarray | None = None

    def __init__(self, array: pa.Array) -> None:
        import numpy as np
        import pyarrow as pa

        if not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        if array.null_count:
            array = array.fill_null("")
        self.array = array
        n = len(array)
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=n + 1 + array.offset)
        offsets = offsets[array.offset :].astype(np.int64)
        data_buffer = array.buffers()[2]
        raw = (
            np.frombuffer(data_buffer, dtype=np.uint8)
            if data_buffer is not None
            else np.zeros(0, np.uint8)
        )
        data = raw[offsets[0] : offsets[-1]]
        starts = offsets[:-1] - offsets[0]
        self.nbytes = np.diff(offsets)
        if Cells._lut is None:
            Cells._lut = _table()
        lut = Cells._lut
        self.flags = np.zeros(n, dtype=np.uint8)
        self.first = np.zeros(n, dtype=np.uint8)
        self.last = np.zeros(n, dtype=np.uint8)
        filled = self.nbytes > 0
        if data.size:
            where = starts[filled]
            byte_flags = lut[data]
            self.flags[filled] = np.bitwise_or.reduceat(byte_flags, where)
            self.first[filled] = byte_flags[where]
            self.last[filled] = byte_flags[where + self.nbytes[filled] - 1]

    def __len__(self) -> int:
        return len(self.array)

    @cached_property
    def blank(self) -> np.ndarray:
        """Cells that are exactly empty."""
        return self.nbytes == 0  # type: ignore[no-any-return]

    @cached_property
    def ascii(self) -> np.ndarray:
        return (self.flags & _HIGH) == 0  # type: ignore[no-any-return]

    @cached_property
    def plain(self) -> np.ndarray:
        """Non-empty cells with nothing to trim and no control characters but inner
        tab/LF/CR: their text is their value."""
        import numpy as np
        import pyarrow.compute as pc

        ok = (
            ~self.blank
            & ((self.flags & _BAD_CONTROL) == 0)
            & ((self.first & _EDGE) == 0)
            & ((self.last & _EDGE) == 0)
        )
        high = ok & ~self.ascii
        if high.any():
            where = np.flatnonzero(high)
            matched = pc.match_substring_regex(self.array.take(where), _PLAIN_RE)
            ok[where] = matched.to_numpy(zero_copy_only=False)
        return ok  # type: ignore[no-any-return]

    @cached_property
    def needs_escape(self) -> bool:
        """Whether any cell needs JSON escaping."""
        return bool((self.flags & _ESCAPE).any())

    def chars(self) -> np.ndarray:
        """Length of each cell in characters (code points, as Python's ``len``)."""
        import pyarrow.compute as pc

        if self.ascii.all():
            return self.nbytes
        return pc.utf8_length(self.array).to_numpy().astype("int64")  # type: ignore[no-any-return]

    def csv_field(self, neutralise: bool = True) -> pa.Array:
        """The cells as the csv module writes them (QUOTE_MINIMAL), formula-like text
        prefixed with ``'`` first (see :func:`leadsync.report.neutralise`)."""
        return csv_field(self.array, self.flags, self.first if neutralise else None)

    def json_string(self) -> pa.Array:
        """Each cell as a JSON string literal, as ``json.dumps(ensure_ascii=False)``
        writes it (valid for plain cells)."""
        import pyarrow.compute as pc

        text = self.array
        if self.needs_escape:
            text = json_escape(text)
        return pc.binary_join_element_wise('"', text, '"', "")


def json_escape(text: pa.Array) -> pa.Array:
    """Escape the characters a plain cell may hold that JSON escapes."""
    import pyarrow.compute as pc

    for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, old, new)
    return text


def csv_field(array: pa.Array, flags: np.ndarray, first: np.ndarray | None) -> pa.Array:
    """Encode cells as CSV fields exactly as ``csv.writer`` does (QUOTE_MINIMAL)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = array
    if first is not None:
        formula = (first & _FORMULA) != 0
        if formula.any():
            out = pc.if_else(pa.array(formula), pc.binary_join_element_wise("'", out, ""), out)
    quote = (flags & _QUOTE) != 0
    if quote.any():
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(out, '"', '""'), '"', "")
        out = pc.if_else(pa.array(quote), quoted, out)
    return out


def text_csv_field(array: pa.Array) -> pa.Array:
    """:func:`csv_field` for computed text (no neutralising)."""
    return Cells(array).csv_field(neutralise=False)


def csv_lines(fields: list[pa.Array]) -> memoryview:
    """Join per-column CSV fields into ``\\r\\n``-terminated lines; return their bytes."""
    import numpy as np
    import pyarrow.compute as pc

    lines = pc.binary_join_element_wise(*fields, ",")
    lines = pc.binary_join_element_wise(lines, "\r\n", "")
    n = len(lines)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=n + 1 + lines.offset)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + n])
    data = lines.buffers()[2]
    return memoryview(data)[start:end] if data is not None else memoryview(b"")


def to_numpy_bool(mask: Any) -> np.ndarray:
    """A pyarrow boolean array (nulls as False) as a numpy bool array."""
    import pyarrow.compute as pc

    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
