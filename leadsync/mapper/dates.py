"""Dates and date-times written as text → the API's forms (spec §3), a column at a time.

This is the one conversion of date text, for every path: the columnar mapper calls it on
a chunk's column, the row-by-row mapper on the column of the rows it maps, and
:func:`~leadsync.mapper.convert.to_iso_date` on a single cell.

A cell is read by its *shape* — its text with every digit written ``0``. The grammar
(:data:`_GRAMMAR`, four regular expressions) is matched once per distinct shape, not per
cell: where it matches, its groups say at which characters the year, month, day, hour,
minute, second and UTC offset stand, and every cell of that shape is read at those
places with numpy. A 1,000,000-row column holds a few dozen shapes. The calendar and the
clock (real days, hours, am/pm, a two-digit year, the time zone of a naive date-time,
daylight saving) are then checked and applied to the whole column at once.

What the result is: a date without a time stays that date (``YYYY-MM-DD``: never pushed
through a time zone, which would shift the day); a date-time becomes UTC
(``YYYY-MM-DDTHH:MM:SSZ``, fractions of a second dropped), read in the configured zone
when it has no offset of its own. A local time a clock shows twice (the hour daylight
saving ends) is the first of the two; one it never shows (the hour it begins) is read
with the offset before the change — Python's ``fold=0``, PEP 495.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from leadsync.columnar import PY_SPACE, string_buffers

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# what parse_dates says of each cell
DATE_OK, NOT_REAL, NOT_A_DATE = 0, 1, 2

# The grammar, read on shapes (ASCII only: a digit is 0-9). Whitespace runs are one space
# by then, and the cell is trimmed.
_ISO = re.compile(
    r"(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,]\d+)?)? ?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<zh>\d{2}):?(?P<zm>\d{2}))?)?",
    re.ASCII,
)
_NUMERIC = re.compile(
    r"(?P<a>\d{1,4})[/.\-](?P<b>\d{1,2})[/.\-](?P<c>\d{1,4})"
    r"(?:[ T]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))? ?(?P<ampm>[AaPp][Mm])?)?",
    re.ASCII,
)
_NAMED = re.compile(
    r"(?:(?P<d1>\d{1,2})(?:st|nd|rd|th)? (?P<mon1>[A-Za-z]+)\.?,? (?P<y1>\d{4})"
    r"|(?P<mon2>[A-Za-z]+)\.? (?P<d2>\d{1,2})(?:st|nd|rd|th)?,? (?P<y2>\d{4}))"
    r"(?:[ T]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?)?",
    re.ASCII,
)
# an Excel serial: days since 1899-12-30, a fraction of a day for the time (the 1900
# system; five digits, 1927-05-18 to 2173-10-13: a four-digit number is more likely a
# year typed alone than a date)
_SERIAL = re.compile(r"(?P<serial>\d{5})(?:\.(?P<fraction>\d{1,12}))?", re.ASCII)
_GRAMMAR = (_ISO, _NUMERIC, _NAMED, _SERIAL)
_SERIAL_1970 = 25569  # the serial of 1970-01-01
_SYSTEM_1904 = 1462  # days from the 1900 system's day 0 to the 1904 system's
_SERIAL_MIN = 10000  # five digits, the first not 0
MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}

Span = tuple[int, int]


@dataclass(frozen=True)
class Layout:
    """Where one shape's fields stand (character spans), and what the shape itself says."""

    year: Span
    day: Span
    month: Span | None  # None: a month name, ``month_number``
    month_number: int = 0
    century: bool = False  # a two-digit year: 20yy
    hour: Span | None = None  # None: a date without a time
    minute: Span | None = None
    second: Span | None = None
    twelve_hour: bool = False  # am/pm: hours 1-12
    pm: bool = False
    utc: bool = False  # ends in Z
    sign: int = 0  # an offset of its own: +1 or -1 (0: none)
    zone_hours: Span | None = None
    zone_minutes: Span | None = None
    serial: Span | None = None  # an Excel serial's days (year, day, month unused)
    fraction: Span | None = None  # ... and its fraction of a day


@lru_cache(maxsize=4096)
def layout(shape: str, order: str) -> Layout | int:
    """The :class:`Layout` of a shape, or the status of every cell of that shape
    (:data:`NOT_A_DATE`: no form of the grammar; :data:`NOT_REAL`: a form whose shape
    alone rules out a real date, as a month called ``Foo`` or a three-digit day)."""
    for grammar in _GRAMMAR:
        m = grammar.fullmatch(shape)
        if m is not None:
            break
    else:
        return NOT_A_DATE
    g = m.groupdict()

    def span(name: str) -> Span | None:
        return m.span(name) if g.get(name) is not None else None

    if grammar is _SERIAL:
        return Layout((0, 0), (0, 0), (0, 0), serial=span("serial"), fraction=span("fraction"))
    clock: dict[str, Any] = {"hour": span("H"), "minute": span("M"), "second": span("S")}
    if grammar is _ISO:
        zone: dict[str, Any] = {}
        if g["utc"]:
            zone["utc"] = True
        elif g["sign"]:
            zone = {
                "sign": 1 if g["sign"] == "+" else -1,
                "zone_hours": span("zh"),
                "zone_minutes": span("zm"),
            }
        return Layout(m.span("y"), m.span("d"), m.span("m"), **clock, **zone)
    if grammar is _NUMERIC:
        a, b, c = m.span("a"), m.span("b"), m.span("c")
        width = [e - s for s, e in (a, b, c)]
        if width[0] == 4:
            year, month, day, century = a, b, c, False
        elif width[2] in (2, 4) and width[0] <= 2:
            month, day = (b, a) if order != "MDY" else (a, b)
            year, century = c, width[2] == 2
        else:
            return NOT_REAL
        ampm = g["ampm"]
        return Layout(
            year,
            day,
            month,
            century=century,
            twelve_hour=ampm is not None,
            pm=ampm is not None and ampm.lower() == "pm",
            **clock,
        )
    day_first = g["d1"] is not None
    name = g["mon1"] if day_first else g["mon2"]
    number = MONTHS.get(name.lower())
    if number is None:
        return NOT_REAL
    day, year = (m.span("d1"), m.span("y1")) if day_first else (m.span("d2"), m.span("y2"))
    return Layout(year, day, None, month_number=number, **clock)


@dataclass
class ParsedDates:
    """:func:`parse_dates`' answer, cell by cell."""

    iso: pa.Array  # the API's form ("" where not DATE_OK)
    status: np.ndarray  # int8: DATE_OK, NOT_REAL or NOT_A_DATE
    text: pa.Array  # each cell as read: trimmed, whitespace runs one space


# the API's own forms: a cell written so is sent as it is (once found real)
_API_FORMS = frozenset({"0000-00-00", "0000-00-00T00:00:00Z"})
_SHAPE: Any = None  # byte -> its shape's byte (set on first use)
_SECONDS_MIN = -62135596800  # 0001-01-01T00:00:00Z, in seconds from 1970
_SECONDS_MAX = 253402300799  # 9999-12-31T23:59:59Z


def parse_dates(texts: pa.Array, order: str, timezone: str, date1904: bool = False) -> ParsedDates:
    """Every cell of ``texts`` (a string array; blank cells are :data:`NOT_A_DATE`) read
    as a date or date-time; ``order`` is the configured date order (DMY, MDY, YMD) of
    ``12/07/2025``, ``timezone`` the zone of a date-time written without an offset;
    ``date1904``: serials count from 1904 (a workbook saved so)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    global _SHAPE
    if _SHAPE is None:
        _SHAPE = np.arange(256, dtype=np.uint8)
        _SHAPE[0x30:0x3A] = 0x30
    if texts.null_count:
        texts = texts.fill_null("")
    n = len(texts)
    sample = texts.slice(0, 2048)
    if n > 1 and 2 * pc.count_distinct(sample).as_py() <= len(sample):
        # a column of few distinct texts (dates without a time repeat: a few hundred days
        # a year) is read once per distinct text
        encoded = texts.dictionary_encode()
        if 2 * len(encoded.dictionary) <= n:
            once = parse_dates(encoded.dictionary, order, timezone, date1904)
            where = encoded.indices
            status_of = once.status[where.to_numpy(zero_copy_only=False)]
            return ParsedDates(once.iso.take(where), status_of, once.text.take(where))
    texts = _normalised(texts)
    data, offsets = string_buffers(texts)
    starts, lengths = offsets[:-1], np.diff(offsets)
    status = np.full(n, NOT_A_DATE, dtype=np.int8)
    fields = np.zeros((9, n), dtype=np.int64)  # y, m, d, H, M, S, zone h, zone m, sign
    timed = np.zeros(n, dtype=bool)
    naive = np.zeros(n, dtype=bool)
    twelve = np.zeros(n, dtype=bool)
    pm = np.zeros(n, dtype=bool)
    century = np.zeros(n, dtype=bool)
    same = np.zeros(n, dtype=bool)  # written as the API writes it: sent as it is
    ascii_ = np.ones(n, dtype=bool)
    if data.size:
        high = np.flatnonzero(data >= 0x80)
        if high.size:
            ascii_[np.searchsorted(offsets, high, side="right") - 1] = False
    candidates = np.flatnonzero(ascii_ & (lengths > 0))
    if candidates.size:
        shaped = _SHAPE.take(data)  # every digit a 0
        shape_array = pa.StringArray.from_buffers(
            n, pa.py_buffer(offsets.astype(np.int32).tobytes()), pa.py_buffer(shaped.tobytes())
        )
        if candidates.size < n:
            shape_array = shape_array.take(pa.array(candidates, pa.int64()))
        encoded = shape_array.dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        shapes = encoded.dictionary.to_pylist()
        if len(shapes) > 1:
            by_shape = np.argsort(codes, kind="stable")
            bounds = np.concatenate([[0], np.cumsum(np.bincount(codes))])
        for k, shape in enumerate(shapes):
            found = layout(shape, order)
            rows = (
                candidates[by_shape[bounds[k] : bounds[k + 1]]] if len(shapes) > 1 else candidates
            )
            if isinstance(found, int):
                status[rows] = found
                continue
            status[rows] = NOT_REAL  # until the calendar and the clock say otherwise
            if shape in _API_FORMS:
                same[rows] = True
            # the shape's characters, cell by cell (one gather per shape; none when every
            # cell has this shape)
            if rows.size == n:
                block = data.reshape(n, len(shape))
            else:
                block = data[starts[rows, None] + np.arange(len(shape))]
            read = partial(_number, block)
            if found.serial is not None:
                refused = _serial_fields(fields, timed, naive, rows, read, found, date1904)
                status[refused] = NOT_A_DATE
                continue
            fields[0, rows] = read(found.year)
            fields[2, rows] = read(found.day)
            fields[1, rows] = read(found.month) if found.month else found.month_number
            century[rows] = found.century
            if found.hour is not None:
                timed[rows] = True
                fields[3, rows] = read(found.hour)
                fields[4, rows] = read(found.minute)
                if found.second is not None:
                    fields[5, rows] = read(found.second)
                twelve[rows], pm[rows] = found.twelve_hour, found.pm
                if found.sign:
                    fields[6, rows] = read(found.zone_hours)
                    fields[7, rows] = read(found.zone_minutes)
                    fields[8, rows] = found.sign
                naive[rows] = not (found.utc or found.sign)
    matched = status == NOT_REAL
    iso, ok = _calendar(fields, matched, timed, naive, twelve, pm, century, timezone, same)
    status[ok] = DATE_OK
    if same.any():  # already in the API's form: the cell's own text
        iso = pc.if_else(pa.array(same & ok), texts, iso)
    return ParsedDates(iso, status, texts)


def _serial_fields(
    fields: np.ndarray,
    timed: np.ndarray,
    naive: np.ndarray,
    rows: np.ndarray,
    read: Any,
    found: Layout,
    date1904: bool,
) -> np.ndarray:
    """An Excel serial's date (and its fraction's time, to the nearest second, read in the
    configured zone) put in ``fields`` at ``rows``; the rows that are not a serial (a
    leading 0) are returned."""
    import numpy as np

    serial = read(found.serial)
    seconds = np.zeros_like(serial)
    if found.fraction is not None:
        s, e = found.fraction
        scale = 10 ** (e - s)  # at most 12 digits: exact in int64, times 2 * 86400
        seconds = (read(found.fraction) * (2 * 86400) + scale) // (2 * scale)  # half up
    epoch = _SERIAL_1970 - (_SYSTEM_1904 if date1904 else 0)
    local = (serial - epoch) * 86400 + seconds
    days, clock = local // 86400, local % 86400
    year, month, day = _civil_from_days(days)
    fields[0, rows], fields[1, rows], fields[2, rows] = year, month, day
    fields[3, rows], fields[4, rows], fields[5, rows] = clock // 3600, clock // 60 % 60, clock % 60
    timed[rows] = naive[rows] = seconds > 0
    return rows[serial < _SERIAL_MIN]  # type: ignore[no-any-return]


def _number(block: np.ndarray, span: Span | None) -> np.ndarray:
    """The number each row of ``block`` (a shape's characters, cell by cell) holds at
    ``span``."""
    import numpy as np

    assert span is not None
    s, e = span
    value = block[:, s].astype(np.int64) - 0x30
    for k in range(s + 1, e):
        value = value * 10 + block[:, k] - 0x30
    return value


def _calendar(
    fields: np.ndarray,
    matched: np.ndarray,
    timed: np.ndarray,
    naive: np.ndarray,
    twelve: np.ndarray,
    pm: np.ndarray,
    century: np.ndarray,
    timezone: str,
    same: np.ndarray,
) -> tuple[pa.Array, np.ndarray]:
    """The real dates and times among the matched cells, in the API's form."""
    import numpy as np

    year, month, day, hour, minute, second, zh, zm, sign = fields
    year = np.where(century, year + 2000, year)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
    last = month_days[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    ok = matched & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= last)
    hour = np.where(twelve, hour % 12 + np.where(pm, 12, 0), hour)
    clock_ok = np.where(twelve, (fields[3] >= 1) & (fields[3] <= 12), hour <= 23)
    clock_ok &= (minute <= 59) & (second <= 59) & (zh <= 23) & (zm <= 59)
    ok &= ~timed | clock_ok
    days = _days_from_civil(year, month, day)
    local = days * 86400 + hour * 3600 + minute * 60 + second
    offset = sign * (zh * 3600 + zm * 60)
    zoned = np.flatnonzero(ok & timed & naive)
    if zoned.size:
        offset[zoned] = _zone_offsets(timezone, local[zoned])
    utc = local - offset
    ok &= ~timed | ((utc >= _SECONDS_MIN) & (utc <= _SECONDS_MAX))
    instant = np.where(timed, utc, days * 86400)
    return _formatted(instant, ok & ~same, timed), ok


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days from 1970-01-01 of each proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468  # type: ignore[no-any-return]


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np

    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, day


def _pairs() -> np.ndarray:
    """00 ... 99 as two ASCII digits in one uint16 each (byte order as in memory)."""
    import numpy as np

    table = np.array([[0x30 + i // 10, 0x30 + i % 10] for i in range(100)], dtype=np.uint8)
    return table.view(np.uint16).ravel()


_PAIRS: Any = None
_TEMPLATE = b"0000-00-00T00:00:00Z"
_DIGIT_AT = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]  # where the 7 pairs go


def _formatted(instant: np.ndarray, ok: np.ndarray, timed: np.ndarray) -> pa.Array:
    """``YYYY-MM-DD`` (a date) or ``YYYY-MM-DDTHH:MM:SSZ`` (a date-time) where ``ok``,
    else "", written two digits at a time into one buffer."""
    import numpy as np
    import pyarrow as pa

    global _PAIRS
    if _PAIRS is None:
        _PAIRS = _pairs()
    n = len(instant)
    lengths = np.where(ok, np.where(timed, 20, 10), 0).astype(np.int32)
    rows = np.flatnonzero(ok)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    if not rows.size:
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b""))
    t = instant[rows]
    days, seconds = t // 86400, t % 86400
    year, month, day = _civil_from_days(days)
    pairs = np.empty((rows.size, 7), dtype=np.uint16)
    values = (year // 100, year % 100, month, day, seconds // 3600, seconds // 60 % 60)
    for k, value in enumerate((*values, seconds % 60)):
        pairs[:, k] = _PAIRS[value]
    buf = np.empty((rows.size, 20), dtype=np.uint8)
    buf[:] = np.frombuffer(_TEMPLATE, dtype=np.uint8)
    buf[:, _DIGIT_AT] = pairs.view(np.uint8).reshape(rows.size, 14)
    widths = lengths[rows]
    if (widths == widths[0]).all():  # one width: a slice, not a mask
        data = buf[:, : widths[0]].tobytes()
    else:
        data = buf[np.arange(20) < widths[:, None]].tobytes()  # row by row, each its length
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def _zone_offsets(timezone: str, local: np.ndarray) -> np.ndarray:
    """The UTC offset (seconds) of each local time (seconds from 1970, as if UTC) in the
    zone: one look per distinct day, and per distinct time on a day the clocks change."""
    import numpy as np

    days, where = np.unique(local // 86400, return_inverse=True)
    per_day = np.array([_day_offset(timezone, int(d)) for d in days.tolist()], dtype=np.int64)
    offsets = per_day[where.ravel()]
    changing = np.flatnonzero(offsets == _CHANGING)
    if changing.size:
        times, at = np.unique(local[changing], return_inverse=True)
        exact = [_local_offset(timezone, int(t)) for t in times.tolist()]
        offsets[changing] = np.array(exact, dtype=np.int64)[at.ravel()]
    return offsets


_CHANGING = -(1 << 40)  # a day on which the zone's offset changes
_EPOCH = dt.datetime(1970, 1, 1)


@lru_cache(maxsize=65536)
def _day_offset(timezone: str, day: int) -> int:
    """The zone's offset all day long on ``day`` (days from 1970), or :data:`_CHANGING`."""
    start = _EPOCH + dt.timedelta(days=day)
    moments = [start + dt.timedelta(hours=h) for h in range(24)]
    moments.append(start + dt.timedelta(seconds=86399))
    seen = {_local_offset_at(timezone, m) for m in moments}
    return seen.pop() if len(seen) == 1 else _CHANGING


def _local_offset(timezone: str, local: int) -> int:
    return _local_offset_at(timezone, _EPOCH + dt.timedelta(seconds=local))


def _local_offset_at(timezone: str, moment: dt.datetime) -> int:
    offset = moment.replace(tzinfo=ZoneInfo(timezone)).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


_SPACE_RUN = PY_SPACE + "+"


def _normalised(texts: pa.Array) -> pa.Array:
    """``" ".join(text.split())`` of every cell: whitespace runs one space, trimmed (only
    the cells that need it are touched)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    data, offsets = string_buffers(texts)
    if not data.size:
        return texts
    odd = (data < 0x20) | (data >= 0x7F)
    spaces = data == 0x20
    if spaces.any():
        odd[:-1] |= spaces[:-1] & spaces[1:]
    lengths = np.diff(offsets)
    filled = np.flatnonzero(lengths > 0)
    edges = np.zeros(len(texts), dtype=bool)
    edges[filled] = (data[offsets[:-1][filled]] == 0x20) | (data[offsets[1:][filled] - 1] == 0x20)
    hits = np.flatnonzero(odd)
    if hits.size:
        edges[np.searchsorted(offsets, hits, side="right") - 1] = True
    where = np.flatnonzero(edges)
    if not where.size:
        return texts
    mask = np.zeros(len(texts), dtype=bool)
    mask[where] = True
    part = texts.take(pa.array(where, pa.int64()))
    part = pc.utf8_trim(pc.replace_substring_regex(part, _SPACE_RUN, " "), " ")
    return pc.replace_with_mask(texts, pa.array(mask), part)
