"""Date text, read a column at a time (leadsync.mapper.dates), against an oracle.

The oracle is the row-by-row reading leadsync used before the columnar one — Python's
``re``, ``datetime.fromisoformat`` and ``zoneinfo`` on one cell at a time — kept here
only, as the thing the one conversion is compared with, on every promised form and on
random cells around every edge (leap days, the clock changes of four zones, offsets,
am/pm, two-digit years, out-of-range fields, the ends of the calendar).

Where the old reading was wrong, the oracle is corrected (each correction says so) and
``test_where_the_old_reading_was_wrong`` names the cells.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadsync.config import Config
from leadsync.fields import VALUE_FORMS, Kind
from leadsync.mapper import to_iso_date
from leadsync.mapper.convert import Bad, to_iso_dates
from leadsync.mapper.dates import DATE_OK, MONTHS, NOT_A_DATE, NOT_REAL, parse_dates

# -- the oracle ----------------------------------------------------------------------

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE | re.ASCII,
)
_NUMERIC = re.compile(
    r"(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?",
    re.ASCII,
)
_NAMED = re.compile(
    r"(?:(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]+)\.?,?\s+(\d{4})"
    r"|([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4}))"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?",
    re.ASCII,
)
_SERIAL = re.compile(r"([1-9]\d{4})(?:\.(\d{1,12}))?", re.ASCII)  # Excel's day count
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)  # serial 0 in the 1900 system (after its leap bug)


def oracle(text: str, order: str, zone: str) -> tuple[int, str]:
    """(status, ISO text) of one cell, the row-by-row way."""
    text = " ".join(text.split())
    try:
        if _ISO_DATE.fullmatch(text):
            return DATE_OK, dt.date.fromisoformat(text).isoformat()
        if _ISO_DATETIME.fullmatch(text):
            iso = text.replace(",", ".").replace(" Z", "Z").replace(" z", "z")
            iso = iso.replace(" +", "+").replace(" -", "-")  # fromisoformat: some of " -0100"
            iso = re.sub(r"([Tt ])(\d):", r"\g<1>0\2:", iso)
            iso = iso[:-1] + "Z" if iso.endswith("z") else iso  # fromisoformat refuses "z"
            if re.search(r"[+-]\d{2}:?[6-9]\d$", iso):  # fromisoformat takes +05:60
                raise ValueError(iso)
            return DATE_OK, _utc(dt.datetime.fromisoformat(iso), zone)
        m = _NUMERIC.fullmatch(text)
        if m:
            return DATE_OK, _numeric(m, order, zone)
        m = _NAMED.fullmatch(text)
        if m:
            return DATE_OK, _named(m, zone)
        m = _SERIAL.fullmatch(text)
        if m:
            return DATE_OK, _serial(m, zone)
    except (ValueError, OverflowError):  # OverflowError: a UTC time outside years 1-9999
        return NOT_REAL, ""
    return NOT_A_DATE, ""


def _numeric(m: re.Match[str], order: str, zone: str) -> str:
    a, b, c, hh, mi, ss, ampm = m.groups()
    if len(a) == 4:
        y, mo, d = int(a), int(b), int(c)
    elif len(c) in (2, 4) and len(a) <= 2:
        y = int(c) if len(c) == 4 else 2000 + int(c)
        mo, d = (int(a), int(b)) if order == "MDY" else (int(b), int(a))
    else:
        raise ValueError(m.group(0))
    date = dt.date(y, mo, d)
    if hh is None:
        return date.isoformat()
    hour = int(hh)
    if ampm:
        if not 1 <= hour <= 12:
            raise ValueError(m.group(0))
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    return _utc(dt.datetime.combine(date, dt.time(hour, int(mi), int(ss or 0))), zone)


def _named(m: re.Match[str], zone: str) -> str:
    d1, mon1, y1, mon2, d2, y2, hh, mi, ss = m.groups()
    day, name, year = (d1, mon1, y1) if d1 else (d2, mon2, y2)
    month = MONTHS.get(name.lower())
    if month is None:
        raise ValueError(name)
    date = dt.date(int(year), month, int(day))
    if hh is None:
        return date.isoformat()
    return _utc(dt.datetime.combine(date, dt.time(int(hh), int(mi), int(ss or 0))), zone)


def _serial(m: re.Match[str], zone: str) -> str:
    days, fraction = m.groups()
    # the fraction of a day to the nearest second, half up (exact: Fraction, not float)
    seconds = int(Fraction(f"0.{fraction or 0}") * 86400 + Fraction(1, 2))
    moment = _EXCEL_EPOCH + dt.timedelta(days=int(days), seconds=seconds)
    return moment.date().isoformat() if not seconds else _utc(moment, zone)


def _utc(value: dt.datetime, zone: str) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))  # fold=0
    utc = value.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)
    return utc.isoformat() + "Z"


# -- the comparisons ----------------------------------------------------------------

ZONES = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]


def engine(cells: list[str], order: str = "DMY", zone: str = "Europe/London") -> list[Any]:
    parsed = parse_dates(pa.array(cells, pa.string()), order, zone)
    return list(zip(parsed.status.tolist(), parsed.iso.to_pylist(), strict=True))


def assert_agree(cells: list[str], order: str, zone: str) -> None:
    got = engine(cells, order, zone)
    want = [oracle(c, order, zone) for c in cells]
    wrong = [(c, g, w) for c, g, w in zip(cells, got, want, strict=True) if g != w]
    assert not wrong, wrong[:10]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("order", ["DMY", "MDY"])
def test_every_promised_form_reads_as_the_oracle_reads_it(order: str, zone: str) -> None:
    forms = list(VALUE_FORMS[Kind.DATE])
    assert_agree(forms, order, zone)
    assert all(status == DATE_OK for status, _ in engine(forms, order, zone))


def _random_cell(r: random.Random) -> str:
    # around the edges: every month length, the clock changes (March, October, April,
    # November), hours and minutes past their ends, years at both ends of the calendar
    y = r.choice([r.randint(1900, 2100), r.randint(1, 9999), 1, 9999, 2000, 2100, 2024])
    m, d = r.randint(0, 13), r.randint(0, 32)
    hh, mi, ss = r.randint(0, 25), r.randint(0, 61), r.randint(0, 61)
    if r.random() < 0.5:
        m, d, hh = r.choice([3, 4, 9, 10, 11]), r.randint(1, 31), r.randint(0, 3)
    zone = f"{r.choice('+-')}{r.randint(0, 25):02d}{r.choice([':', ''])}{r.choice([0, 30, 45, 60])}"
    forms = [
        f"{y:04d}-{m:02d}-{d:02d}",
        f"{d:02d}/{m:02d}/{y}",
        f"{d}/{m}/{y % 100:02d}",
        f"{y:04d}/{m}/{d}",
        f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}Z",
        f"{y:04d}-{m:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}{zone}",
        f"{y:04d}-{m:02d}-{d:02d}t{hh}:{mi:02d}:{ss:02d},{r.randint(0, 10**7)} {zone}",
        f"{y:04d}-{m:02d}-{d:02d} {hh}:{mi:02d}",
        f"{d}/{m}/{y % 100:02d} {hh % 14}:{mi:02d} {r.choice(['am', 'PM', 'pm', 'Am'])}",
        f"{d:02d}.{m:02d}.{y % 100:02d} {hh}:{mi:02d}:{ss:02d}",
        f"{d} {r.choice(['July', 'jan', 'Sept', 'Foo', 'DECEMBER', 'Feb'])} {y:04d}",
        f"{r.choice(['March', 'Oct', 'nov.'])} {d}{r.choice(['th', 'st', ''])}, {y:04d} {hh}:{mi:02d}",
        f"  {d:02d}/{m:02d}/{y}\t{hh:02d}:{mi:02d} ",
        f"{d}\u00a0July\u2003{y}",
        f"{y}{m:02d}{d:02d}",
        # Excel serials: around the five-digit ends, whole, with a fraction (to half a
        # second either side of midnight), a leading zero, four or six digits
        f"{r.choice([r.randint(10000, 99999), 10000, 99999, 45850, 45956, 45746])}"
        f"{r.choice(['', '.0', '.5', '.99999', '.999994', '.000005', '.0625', '.' + str(r.randint(0, 10**12 - 1)).zfill(12)])}",
        r.choice(["01234", "9999", "100000", "45850.", "45850.1234567890123", "4585O"]),
        r.choice(["tomorrow", "", "#N/A", "2025-07-12T", "12/07", "1.2.3", "٢٠٢٥-07-12"]),
    ]
    return r.choice(forms)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("order", ["DMY", "MDY"])
def test_random_cells_around_every_edge_read_as_the_oracle_reads_them(
    order: str, zone: str
) -> None:
    r = random.Random(f"{order}{zone}")
    cells = [_random_cell(r) for _ in range(4000)]
    assert_agree(cells, order, zone)
    statuses = {status for status, _ in engine(cells, order, zone)}
    assert statuses == {DATE_OK, NOT_REAL, NOT_A_DATE}  # the sample reaches all three


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789-/.: TZtzapmAPMJulyFeb,+\u00a0", max_size=26)))
def test_any_text_reads_as_the_oracle_reads_it(cells: list[str]) -> None:
    assert_agree(cells, "DMY", "Europe/London")


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.sampled_from(ZONES),
)
def test_any_date_time_cell_is_the_oracle_s(moment: dt.datetime, zone: str) -> None:
    cells = [moment.isoformat(sep=" "), moment.isoformat(), moment.date().isoformat()]
    assert_agree(cells, "DMY", zone)


def test_the_clock_changes_are_settled_as_python_settles_fold_0() -> None:
    # 01:30 on the night the clocks go back is the first 01:30 (BST); on the night they
    # go forward, 01:30 never happens and is read with the offset before (GMT)
    got = engine(["2025-10-26 01:30", "2025-03-30 01:30", "2025-03-30 02:30"])
    assert [iso for _, iso in got] == [
        "2025-10-26T00:30:00Z",
        "2025-03-30T01:30:00Z",
        "2025-03-30T01:30:00Z",
    ]


def test_where_the_old_reading_was_wrong() -> None:
    cells = [
        "2025-07-12T10:00:00z",  # a lower-case Z: the zone is UTC (the old reading refused it)
        "2025-07-12T10:00:00+05:60",  # minute 60 of an offset: not real (it was six hours)
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC: not real (it raised)
        "٢٠٢٥-07-12",  # Arabic-Indic digits: not a date (it was "not real")
    ]
    assert engine(cells) == [
        (DATE_OK, "2025-07-12T10:00:00Z"),
        (NOT_REAL, ""),
        (NOT_REAL, ""),
        (NOT_A_DATE, ""),
    ]


def test_one_cell_and_a_column_are_the_same_conversion() -> None:
    config = Config()
    cells: list[Any] = ["12/07/2025 14:30", "31/02/2025", "tomorrow", dt.date(2025, 7, 12)]
    cells += [dt.datetime(2025, 7, 12, 0, 30, 5, 999), 45850, 45850.5, 2025, True]
    column = to_iso_dates(cells, config)
    assert [to_iso_date(c, config) for c in cells][:1] == column[:1]
    assert column[0] == "2025-07-12T13:30:00Z"
    # an Excel serial cell (a number: the date lost its format) reads as its text would
    assert column[3:7] == [
        "2025-07-12",
        "2025-07-11T23:30:05Z",
        "2025-07-12",
        "2025-07-12T11:00:00Z",
    ]
    messages = [v.message for v in column if isinstance(v, Bad)]
    assert messages == [
        "'31/02/2025' is not a real date",
        "'tomorrow' is not a date: use 2025-07-12, 12/07/2025 or 2025-07-12 14:30",
        "'2025' is not a date: use 2025-07-12, 12/07/2025 or 2025-07-12 14:30",
        "expected a date, got 'TRUE'",
    ]


def test_a_cell_s_spaces_are_read_as_one_and_quoted_so() -> None:
    (bad,) = to_iso_dates(["  31 /02/2025\t "], Config())
    assert isinstance(bad, Bad) and bad.message.startswith("'31 /02/2025' is not a date")


def test_a_column_of_repeated_cells_is_read_once_per_text_and_alike() -> None:
    r = random.Random(9)
    distinct = [_random_cell(r) for _ in range(150)] + list(VALUE_FORMS[Kind.DATE])
    cells = [r.choice(distinct) for _ in range(3000)]  # few texts: read once each
    assert 2 * len(set(cells)) <= len(cells)
    assert_agree(cells, "DMY", "Europe/London")
    assert_agree(cells, "MDY", "America/New_York")
