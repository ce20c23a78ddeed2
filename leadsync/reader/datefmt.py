"""Excel date and time formats: what a date cell shows, as Excel's "Save as CSV" writes it.

python-calamine reads a date cell as a date (``2025-07-12``), while Excel shows it
through the cell's format (``12/07/2025``, ``12 July 2025``, ``12/07/2025 14:30``). A text
field sends what the sheet shows (spec §3), so :func:`render_date` turns (value, format
code) into that text: day, month and year in every width, month and day names (English,
as the API is British), hours on a 24- or 12-hour clock (``AM/PM``, ``A/P``), minutes,
seconds and their fractions (rounded as Excel rounds them), literals. A format it cannot
render faithfully (elapsed ``[h]``, eras, a number placeholder) gives None, and the cell
is read as it was: never a guess.

Excel shows two built-in formats in the computer's own short date (:data:`LOCAL_BUILTIN`):
they are rendered as Excel set to English (United Kingdom) shows them, or as Excel set to
English (United States) does for a mapping whose dates are month-first
(:func:`short_dates`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from typing import Any

from leadsync.reader.cells import Shown, normalise_cell
from leadsync.reader.numfmt import kind, literal, sections, shown_number, unsupported

# Where Excel's rules are not written down, SheetJS's SSF (which copies Excel's display)
# decides: seconds rounded to the unit shown, AM/PM in capitals.

# the built-in formats Excel shows in the system's short date: as en-GB shows them, and
# as en-US does
LOCAL_BUILTIN: Mapping[int, str] = {14: "dd/mm/yyyy", 22: "dd/mm/yyyy hh:mm"}
_MONTH_FIRST_BUILTIN: Mapping[int, str] = {14: "m/d/yyyy", 22: "m/d/yyyy h:mm"}


def short_dates(date_order: str) -> Mapping[int, str]:
    """The built-in short date formats as the user's Excel shows them: month first for a
    mapping whose dates are (``[dates] order = "MDY"``: Excel set to English (United
    States)), else day first (English (United Kingdom), the API's own order)."""
    return _MONTH_FIRST_BUILTIN if date_order == "MDY" else LOCAL_BUILTIN


_TOKEN = re.compile(
    r'"[^"]*"|\\.|_.|\*.|\[[^\]]*\]'  # literals, widths, fills, [colour] [$-809] [h]
    r"|(?i:am/pm|a/p)"
    r"|(?i:y+|m+|d+|h+|s+|e+|g+|b+)"
    r"|\.0+"  # a fraction of a second
    r"|.",
)
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ELAPSED = re.compile(r"\[(?:h+|m+|s+)\]", re.I)


@functools.lru_cache(maxsize=65536)
def render_date(value: dt.date | dt.time, code: str) -> str | None:
    """What Excel shows for the date, date-time or time ``value`` under the format
    ``code``; None when this module cannot render that format faithfully."""
    if unsupported(code):
        return None
    tokens = _TOKEN.findall(sections(code)[0])
    if isinstance(value, dt.datetime):
        moment = value.replace(tzinfo=None)
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    else:
        if any(t[:1].lower() in "ymd" and not _is_minutes(tokens, i) for i, t in enumerate(tokens)):
            return None  # a time of day under a date format: Excel's day 0
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value.replace(tzinfo=None))
    places = max((len(t) - 1 for t in tokens if t.startswith(".0")), default=0)
    try:
        moment = _rounded(moment, places)
    except OverflowError:
        return None
    twelve = next((t for t in tokens if t.lower() in ("am/pm", "a/p")), None)
    out = []
    for i, token in enumerate(tokens):
        lower = token.lower()
        letter = lower[:1]
        if lower in ("am/pm", "a/p"):
            pm = moment.hour >= 12
            if lower == "am/pm":  # AM or PM however it is written; A/P as written
                out.append("PM" if pm else "AM")
            else:
                out.append(token[2] if pm else token[0])
        elif letter == "y":
            out.append(f"{moment.year % 100:02d}" if len(token) <= 2 else f"{moment.year:04d}")
        elif letter == "m" and _is_minutes(tokens, i):
            out.append(f"{moment.minute:0{min(len(token), 2)}d}")
        elif letter == "m":
            out.append(_month(moment.month, len(token)))
        elif letter == "d":
            if len(token) <= 2:
                out.append(f"{moment.day:0{len(token)}d}")
            else:
                name = _DAYS[moment.weekday()]
                out.append(name[:3] if len(token) == 3 else name)
        elif letter == "h":
            hour = moment.hour % 12 or 12 if twelve else moment.hour
            out.append(f"{hour:0{min(len(token), 2)}d}")
        elif letter == "s":
            out.append(f"{moment.second:0{min(len(token), 2)}d}")
        elif token.startswith(".0"):
            digits = f"{moment.microsecond:06d}"[: len(token) - 1]
            out.append("." + digits)
        elif letter in "egb" and token.isalpha():
            return None  # an era, a Buddhist year: not rendered
        elif token in ("0", "#", "?", "@") or _ELAPSED.fullmatch(token):
            return None  # a number placeholder or an elapsed time in a date format
        else:
            out.append(literal(token))
    return "".join(out)


def _is_minutes(tokens: list[str], i: int) -> bool:
    """Whether the ``m`` or ``mm`` at ``tokens[i]`` is minutes: after an hour, or before
    a second (literals between), as Excel reads it."""
    if tokens[i][:1].lower() != "m" or len(tokens[i]) > 2:
        return False
    for j in range(i - 1, -1, -1):
        letter = tokens[j][:1].lower()
        if letter in "ymdhs" and tokens[j].isalpha():
            if letter == "h":
                return True
            break
    for j in range(i + 1, len(tokens)):
        letter = tokens[j][:1].lower()
        if letter in "ymdhs" and tokens[j].isalpha():
            return letter == "s"
    return False


def _month(month: int, width: int) -> str:
    if width <= 2:
        return f"{month:0{width}d}"
    name = _MONTHS[month - 1]
    return name[:3] if width == 3 else (name[0] if width == 5 else name)


def _rounded(moment: dt.datetime, places: int) -> dt.datetime:
    """``moment`` to the nearest unit Excel shows (a second, or its ``places`` decimals):
    14:29:59.6 shows 14:30:00."""
    unit = 10 ** (6 - places)
    rest = moment.microsecond % unit
    moment -= dt.timedelta(microseconds=rest)
    if 2 * rest >= unit:
        moment += dt.timedelta(microseconds=unit)
    return moment


def formatted(value: Any, code: str) -> Any:
    """A calamine cell under the number format ``code``: a number as the text it shows
    (:class:`~leadsync.reader.cells.Shown`, keeping the number); a date, a date-time or
    a time as the text it shows (keeping the value), a date under a date-and-time format
    as a date-time (calamine reads midnight as a plain date)."""
    if value.__class__ in (float, int):
        # a column under one format repeats its values (office ids, prices): each
        # distinct number is rendered once, its Shown shared (0 is not cached: -0.0 ==
        # 0.0 as a key)
        shown = _shown(value, code) if value else _shown.__wrapped__(value, code)
        return value if shown is None else shown
    if value.__class__ in _DATE_CELLS:
        shows = kind(code)
        if shows not in ("date", "datetime", "time"):
            return value
        if value.__class__ is dt.date and shows == "datetime":
            value = dt.datetime.combine(value, dt.time())
        # a text field sends what the cell shows; a date field its date
        text = render_date(value, code)
        return value if text is None else Shown(text, value)
    return value


_DATE_CELLS = (dt.date, dt.datetime, dt.time)


@functools.lru_cache(maxsize=65536, typed=True)
def _shown(value: float, code: str) -> Shown | None:
    """A number under ``code`` as a :class:`Shown` (None: it shows as its plain number)."""
    text = shown_number(value, code)
    return None if text is None else Shown(text, normalise_cell(value))
