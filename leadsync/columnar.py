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

from leadsync.csvsafe import FORMULA_RE, is_formula
from leadsync.defaults import ARROW_DECAY_MS

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# Per-byte flags
_BAD_CONTROL = 1  # a control character other than tab, LF, CR
_QUOTE = 2  # makes the csv module quote the field: , " CR LF
_HIGH = 4  # part of a non-ASCII character
_ESCAPE = 8  # JSON escapes it: " \ tab LF CR
_EDGE = 16  # str.strip() would remove it at either end (ASCII whitespace and controls)
_FORMULA = 32  # a one-character cell of it is a formula (csvsafe.FORMULA_RE)
_DQUOTE = 64  # a double quote (doubled inside a quoted CSV field)

# A spreadsheet may run a cell that starts with one of these as a formula (CSV injection)
# The csv module quotes a field holding any of these (QUOTE_MINIMAL, "\r\n" lines)
_CSV_QUOTED = ',"\r\n'

# Python's str.isspace(), in RE2 syntax (checked against Python by the tests)
PY_SPACE = r"[\t-\r\x1c-\x1f\x{85}\p{Z}]"
TRIM_RE = f"^{PY_SPACE}+|{PY_SPACE}+$"
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
        if chr(b) in _CSV_QUOTED:
            flag |= _QUOTE
        if b >= 0x80:
            flag |= _HIGH
        if b in b'"\\\t\n\r':
            flag |= _ESCAPE
        if b <= 0x20 or b == 0x7F:
            flag |= _EDGE
        if is_formula(chr(b)):  # the rule on a one-character cell: = + - @ tab CR
            flag |= _FORMULA
        if b == 0x22:
            flag |= _DQUOTE
        lut[b] = flag
    return lut


_LUT = None
_PROBED = False


def prepare_pyarrow() -> None:
    """Once, before leadsync's first pyarrow call: skip pyarrow's pandas probe, and have
    its jemalloc pool hand freed memory back within :data:`ARROW_DECAY_MS`.

    The probe: pyarrow imports pandas (0.3 s) just to ask whether a value is a pandas
    object, and leadsync never hands it one; pyarrow still imports pandas if someone later
    asks it for pandas (``to_pandas``): it only skips its first, optional look."""
    import sys

    import pyarrow as pa

    global _PROBED
    if _PROBED:
        return
    _PROBED = True
    if pa.default_memory_pool().backend_name == "jemalloc":
        pa.jemalloc_set_decay_ms(ARROW_DECAY_MS)
    if "pandas" in sys.modules:
        return

    class _NoPandas:
        @staticmethod
        def find_spec(name: str, *args: Any) -> None:
            if name == "pandas":
                raise ImportError("leadsync: skipped pyarrow's pandas probe")

    sys.meta_path.insert(0, _NoPandas)
    try:
        pa.scalar(0)
    finally:
        sys.meta_path.remove(_NoPandas)


def string_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's UTF-8 bytes and where each cell starts (the last entry: where
    the data ends), from 0, without copying the bytes."""
    import numpy as np

    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32, count=n + 1 + array.offset)
    offsets = offsets[array.offset :].astype(np.int64)
    data_buffer = array.buffers()[2]
    raw = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, np.uint8)
    )
    return raw[offsets[0] : offsets[-1]], offsets - offsets[0]


def _edge_may_be_refused(data: np.ndarray, offsets: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Which of ``cells`` (non-ASCII ones) may begin or end with a character
    :data:`_PLAIN_RE` refuses at an edge, from their bytes: only U+0080-U+00A0, U+1680,
    U+2000-U+200A, U+2028, U+2029, U+202F, U+205F and U+3000 are non-ASCII there (the
    tests check this against the regex, code point by code point). The others (``£``,
    ``é``, ``✓``) are plain without the regex; these few still go through it."""
    starts, ends = offsets[cells], offsets[cells + 1]

    def at(positions: np.ndarray) -> Any:
        return data.take(positions, mode="clip")  # past a cell's end: only a false doubt

    at_start = _refused(at(starts), at(starts + 1), at(starts + 2))
    either: np.ndarray = at_start | _refused(at(ends - 3), at(ends - 2), at(ends - 1), last=True)
    return either


def _refused(a: Any, b: Any, c: Any, *, last: bool = False) -> Any:
    """Bytes ``a b c`` that may spell one of the refused characters of
    :func:`_edge_may_be_refused`: from the cell's first byte, or (``last``) ending at
    its last byte, where a two-byte one is ``b c``."""
    two = (b == 0xC2) & (c <= 0xA0) if last else (a == 0xC2) & (b <= 0xA0)
    three = (
        ((a == 0xE1) & (b == 0x9A) & (c == 0x80))
        | ((a == 0xE2) & (b == 0x80) & ((c <= 0x8A) | (c == 0xA8) | (c == 0xA9) | (c == 0xAF)))
        | ((a == 0xE2) & (b == 0x81) & (c == 0x9F))
        | ((a == 0xE3) & (b == 0x80) & (c == 0x80))
    )
    return two | three


class Cells:
    """One column of a chunk as a pyarrow string array plus per-cell byte facts."""

    data: np.ndarray  # the column's UTF-8 bytes
    offsets: np.ndarray  # where each cell starts (and, last, where the data ends)
    nbytes: np.ndarray
    blank: np.ndarray
    flags: np.ndarray  # OR of the byte flags of each cell
    first: np.ndarray  # flags of each cell's first byte
    last: np.ndarray  # flags of each cell's last byte
    first_byte: np.ndarray

    def __init__(self, array: pa.Array) -> None:
        import numpy as np
        import pyarrow as pa

        global _LUT
        if _LUT is None:
            _LUT = _table()
        if not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        if array.null_count:
            array = array.fill_null("")
        self.array = array
        n = len(array)
        self.data, self.offsets = data, offsets = string_buffers(array)
        self.nbytes = np.diff(offsets)
        self.blank = self.nbytes == 0
        self.first_byte = np.zeros(n, dtype=np.uint8)
        if not data.size:
            self.flags = self.first = self.last = self.first_byte
            return
        blank = self.blank
        full = not blank.any()  # the usual case: nothing to mask
        # every cell's first and last byte, a blank cell's from its neighbours (clipped
        # at the ends), then masked: np.take is ~2x faster than fancy indexing here
        self.first_byte = data.take(offsets[:-1], mode="clip")
        self.first = _LUT.take(self.first_byte)  # flags of the first byte
        self.last = _LUT.take(data.take(offsets[1:] - 1, mode="clip"))  # ... of the last
        if not full:
            self.first_byte[blank] = 0
            self.first[blank] = 0
            self.last[blank] = 0
        # reduceat over every cell's start: a blank cell reads its neighbour's byte (then
        # masked); the blank cells at the very end start past the data and are left out
        starts = offsets[:-1]
        within = n if full else int(np.searchsorted(starts, data.size))
        starts = starts[:within]

        def per_cell(ufunc: Any, values: np.ndarray) -> np.ndarray:
            out = np.zeros(n, dtype=values.dtype)
            out[:within] = ufunc.reduceat(values, starts)
            if not full:
                out[blank] = 0
            return out

        self.flags = np.zeros(n, dtype=np.uint8)
        lo, hi = int(data.min()), int(data.max())
        # control characters somewhere (DEL can hide below non-ASCII bytes in the max):
        # every byte's flags
        if lo < 0x20 or (hi >= 0x7F and bool((data == 0x7F).any())):
            self.flags = per_cell(np.bitwise_or, _LUT[data])
            return
        # Printable text: find the few bytes that matter by comparison (cheap) rather
        # than looking every byte up in the table.
        wanted = [(0x2C, _QUOTE), (0x22, _QUOTE | _DQUOTE | _ESCAPE), (0x5C, _ESCAPE)]
        for byte, flag in wanted + ([(-1, _HIGH)] if hi >= 0x80 else []):
            hit = data >= 0x80 if byte < 0 else data == byte
            count = int(np.count_nonzero(hit))
            if not count:
                continue
            if count < n // 4:  # sparse: mark the cells that own the hits
                self.flags[self._owners(np.flatnonzero(hit))] |= flag
            else:
                self.flags[per_cell(np.logical_or, hit)] |= flag

    def __len__(self) -> int:
        return len(self.array)

    def _owners(self, positions: np.ndarray) -> np.ndarray:
        """The cell that holds each byte position of ``data``."""
        import numpy as np

        return np.searchsorted(self.offsets, positions, side="right") - 1

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
            # Only a non-ASCII first or last character can be a space strip() removes,
            # and only a C2 byte can start a C1 control (U+0080-U+009F): other cells are
            # plain without the regex.
            doubt = high & (((self.first | self.last) & _HIGH) != 0)
            edges = np.flatnonzero(doubt)
            if edges.size:  # most non-ASCII edges are told by their bytes
                doubt[edges[~_edge_may_be_refused(self.data, self.offsets, edges)]] = False
            lead = np.flatnonzero(self.data[:-1] == 0xC2)
            if lead.size:
                follow = self.data[lead + 1]
                c1 = lead[(follow >= 0x80) & (follow <= 0x9F)]
                if c1.size:
                    owner = self._owners(c1)
                    doubt[owner] |= high[owner]
            where = np.flatnonzero(doubt)
            if where.size:
                matched = pc.match_substring_regex(self.array.take(where), _PLAIN_RE)
                ok[where] = matched.to_numpy(zero_copy_only=False)
        return ok  # type: ignore[no-any-return]

    @cached_property
    def whole_number(self) -> np.ndarray:
        """Cells of ASCII digits without a leading zero, at most 18 of them (from 1 up)."""
        import numpy as np

        ok = ~self.blank & (self.nbytes <= 18)
        if not ok.any():
            return ok
        starts = self.offsets[:-1][~self.blank]
        low = np.zeros(len(self), dtype=np.uint8)
        high = np.zeros(len(self), dtype=np.uint8)
        low[~self.blank] = np.minimum.reduceat(self.data, starts)
        high[~self.blank] = np.maximum.reduceat(self.data, starts)
        ok &= (low >= 0x30) & (high <= 0x39) & (self.first_byte != 0x30)
        return ok

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
        prefixed with ``'`` first (see :func:`leadsync.csvsafe.neutralise`)."""
        return csv_field(self.array, self.flags, self.first if neutralise else None)

    def json_string(self) -> pa.Array:
        """Each cell as a JSON string literal, as ``json.dumps(ensure_ascii=False)``
        writes it (valid for plain cells)."""
        import pyarrow.compute as pc

        text = self.array
        if self.needs_escape:
            text = json_escape(text)
        return pc.binary_join_element_wise('"', text, '"', "")


def trimmed(cells: Cells) -> pa.Array:
    """Each cell as ``str.strip()`` leaves it."""
    import pyarrow.compute as pc

    if (cells.blank | cells.plain).all():
        return cells.array
    return pc.replace_substring_regex(cells.array, TRIM_RE, "")


def json_escape(text: pa.Array) -> pa.Array:
    """Escape the characters a plain cell may hold that JSON escapes."""
    import pyarrow.compute as pc

    for old, new in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, old, new)
    return text


def csv_field(array: pa.Array, flags: np.ndarray, first: np.ndarray | None) -> pa.Array:
    """Encode cells as CSV fields exactly as ``csv.writer`` does (QUOTE_MINIMAL)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out = array
    if first is not None:
        formula = (first & _FORMULA) != 0
        # a space, a line break or a non-ASCII first byte may hide a formula (" =1",
        # "\uff1d1"): only those cells are matched against the one rule
        doubt = np.flatnonzero(((first & (_EDGE | _HIGH)) != 0) & ~formula)
        if len(doubt):
            hit = pc.match_substring_regex(array.take(pa.array(doubt)), FORMULA_RE)
            formula[doubt[hit.to_numpy(zero_copy_only=False)]] = True
        if formula.any():
            out = pc.if_else(pa.array(formula), pc.binary_join_element_wise("'", out, ""), out)
    quote = (flags & _QUOTE) != 0
    if quote.any():
        doubled = pc.replace_substring(out, '"', '""') if (flags & _DQUOTE).any() else out
        quoted = pc.binary_join_element_wise('"', doubled, '"', "")
        out = pc.if_else(pa.array(quote), quoted, out)
    return out


def csv_text(text: str) -> str:
    """One field as ``csv.writer`` (QUOTE_MINIMAL) writes it."""
    if any(c in text for c in _CSV_QUOTED):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_lines(fields: list[Any], keep: np.ndarray | None = None) -> list[memoryview]:
    """Join per-column CSV fields into ``\\r\\n``-terminated lines and return their
    bytes: one block, or (with ``keep``) one block per run of kept rows, without copying."""
    import numpy as np
    import pyarrow.compute as pc

    last = pc.binary_join_element_wise(fields[-1], "\r\n", "")
    lines = pc.binary_join_element_wise(*fields[:-1], last, ",")
    n = len(lines)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=n + 1 + lines.offset)
    offsets = offsets[lines.offset :]
    data = lines.buffers()[2]
    if data is None:
        return []
    view = memoryview(data)
    if keep is None:
        return [view[int(offsets[0]) : int(offsets[n])]]
    # runs of kept rows: where keep switches on and off
    edges = np.flatnonzero(np.diff(np.concatenate(([False], keep, [False])).astype(np.int8)))
    return [
        view[int(offsets[a]) : int(offsets[b])]
        for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True)
    ]


def to_numpy_bool(mask: Any) -> np.ndarray:
    """A pyarrow boolean array (nulls as False) as a numpy bool array."""
    import pyarrow.compute as pc

    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]
