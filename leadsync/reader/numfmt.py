"""Excel number formats: what a number cell shows, as Excel's "Save as CSV" writes it.

python-calamine gives a number cell's value only (``7``), while Excel shows it through
the cell's format (``00007``, ``£350,000``, ``50%``). :func:`render` turns (value,
format code) into that text for the formats exports use: zero padding, thousands
separators, fixed decimals, percent, currency and other literals, several sections
(``#,##0;(#,##0)``), a thousands scale (``#,##0,"k"``), scientific notation, ``@``.
A format it cannot render faithfully (fractions, conditions, dates on a number that
calamine did not read as a date) gives None, and the caller says so: never a guess.

No maintained Python library renders these correctly (``q2numfmt`` 0.1.1 turns ``7``
under ``00000`` into ``7`` and drops quoted literals), hence this module; its cases are
checked against what Excel and LibreOffice display in ``tests/test_excel_fidelity.py``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

from leadsync.reader.cells import float_text

# ECMA-376 18.8.30: the built-in formats a file refers to by id alone (14-22 and
# 45-47 are dates and times, which calamine types itself)
BUILTIN = {
    0: "General", 1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00", 9: "0%", 10: "0.00%",
    11: "0.00E+00", 12: "# ?/?", 13: "# ??/??", 14: "mm-dd-yy", 15: "d-mmm-yy",
    16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM", 19: "h:mm:ss AM/PM", 20: "h:mm",
    21: "h:mm:ss", 22: "m/d/yy h:mm", 37: "#,##0 ;(#,##0)", 38: "#,##0 ;[Red](#,##0)",
    39: "#,##0.00;(#,##0.00)", 40: "#,##0.00;[Red](#,##0.00)", 45: "mm:ss",
    46: "[h]:mm:ss", 47: "mmss.0", 48: "##0.0E+0", 49: "@",
}  # fmt: skip

_TOKEN = re.compile(
    r'"[^"]*"'  # a quoted literal
    r"|\\."  # an escaped character
    r"|_."  # the width of a character: a space
    r"|\*."  # fill to the column's width: nothing in a CSV
    r"|\[[^\]]*\]"  # [Red], [$£-809], [>100]
    r"|[Ee][+-]"  # scientific notation
    r"|(?i:general)"  # the number as General shows it, among literals (General_) )
    r"|."
)
_DATE_TOKENS = set("yYmMdDhHsS")
_GENERAL = "\x00"  # where General's number goes in a section's literal text
_QUANTA = [Decimal(1).scaleb(-n) for n in range(31)]
# Excel shows 15 significant digits: a number this large shows, in fixed-point digits,
# digits a float does not hold, which are not rendered here (it is read as it is)
_LARGEST = 1e15
_EXACT = Context(prec=80)  # 15 digits and 30 decimals, rounded without loss


# the kinds of format whose cells are put back as they show (General and @ show a cell
# as calamine reads it)
SHOWN_KINDS = frozenset({"number", "date", "datetime", "time"})


@functools.lru_cache(maxsize=256)
def kind(code: str) -> str:
    """``general``, ``text`` (``@``), ``date``, ``datetime`` (a date with a time of
    day), ``time`` or ``number``: what a format does, from its first section."""
    first = sections(code)[0]
    letters = {t for t in _tokens(first) if len(t) == 1} & _DATE_TOKENS
    if first.strip().lower() == "general" or not first.strip():
        return "general"
    if "@" in _tokens(first) and not any(t in "0#?" for t in _tokens(first)):
        return "text"
    if letters:
        has_date = bool(letters & set("yYdD")) or (
            bool(letters & set("mM")) and not letters & set("hHsS")
        )
        has_time = bool(letters & set("hHsS"))
        if has_date and has_time:
            return "datetime"
        return "date" if has_date else "time"
    return "number"


def render(value: float, code: str) -> str | None:
    """What Excel shows for the number ``value`` under the format ``code``; None when
    this module cannot render that format faithfully."""
    parts = sections(code)
    if unsupported(code) or not math.isfinite(value):
        return None
    if value < 0 and len(parts) >= 2:
        section, value, sign = parts[1], -value, ""
    elif value == 0 and len(parts) >= 3:
        section, sign = parts[2], ""
    else:
        section, sign = parts[0], "-" if value < 0 else ""
        value = abs(value)
    plan = _plan(section)
    if plan is None:
        return None
    if isinstance(plan, str):  # a section without digits: General, @, or literal text
        if plan == "@":
            return sign + general(value)
        return plan.replace(_GENERAL, sign + general(value))
    if plan.exp_at is None and value >= _LARGEST:
        return None
    text = _number(value, plan)
    if text is None:
        return None
    if sign and not _shows_a_digit(text, plan):  # -0.001 under "0.00" shows 0.00
        sign = ""
    return sign + text


def _shows_a_digit(text: str, plan: _Plan) -> bool:
    """Whether a rendered number shows a digit other than 0 (its literals aside: -0.5
    under ``#,##0,"k"`` shows 0k, as LibreOffice shows it)."""
    for part in plan.template:
        if part:
            text = text.replace(part, "", 1)
    return any(c in "123456789" for c in text)


@functools.lru_cache(maxsize=256)
def unsupported(code: str) -> bool:
    parts = sections(code)
    return len(parts) > 4 or any(_condition(s) for s in parts)


@dataclass(frozen=True)
class _Plan:
    """One section's placeholders, worked out once per format."""

    tokens: tuple[str, ...]
    template: tuple[str, ...]  # each token's literal text ("" for a placeholder)
    exp_at: int | None
    dot: int | None
    scale: int  # thousands: each trailing comma divides by 1,000
    percent: int
    grouping: bool
    int_slots: tuple[int, ...]
    frac_slots: tuple[int, ...]
    zero_int: bool  # a 0 among the integer placeholders: 0.5 shows 0.5, not .5
    # the common shape, rendered without the general walk: literals only before and after
    # one run of digits (0 # , . with fixed 0 decimals): "£"#,##0 · 00000 · 0.00% · #,##0.00
    simple: tuple[str, str, int] | None = None  # (prefix, suffix, zeros to pad to)


@functools.lru_cache(maxsize=1024)
def _plan(section: str) -> _Plan | str | None:
    """How to render ``section``: a plan, the text of a section without digits ("@" for
    General), or None when it cannot be rendered faithfully."""
    tokens = tuple(_tokens(section))
    if {t for t in tokens if len(t) == 1} & _DATE_TOKENS - {"e", "E"}:
        return None  # a date format on a number calamine did not read as a date
    if "/" in tokens and any(t in "0#?" for t in tokens):
        return None  # fractions
    if not any(t in "0#?" for t in tokens):
        if "@" in tokens or section.strip().lower() == "general":
            return "@"
        return "".join(_GENERAL if t.lower() == "general" else literal(t) for t in tokens)
    exp_at = next((i for i, t in enumerate(tokens) if t[:1] in "Ee" and len(t) == 2), None)
    digits = [i for i, t in enumerate(tokens) if t in ("0", "#", "?")]
    dot = next((i for i, t in enumerate(tokens) if t == "."), None)
    last = digits[-1]
    scale = 0
    for t in tokens[last + 1 :]:
        if t != ",":
            break
        scale += 1
    int_slots = tuple(i for i in digits if dot is None or i < dot)
    frac_slots = tuple(i for i in digits if dot is not None and i > dot)
    run = tokens[digits[0] : last + 1]
    simple = None
    if (
        exp_at is None
        and all(t in ("0", "#", ",", ".") for t in run)
        and all(tokens[i] == "0" for i in frac_slots)
        and int_slots
    ):
        prefix = "".join(literal(t) for t in tokens[: digits[0]])
        suffix = "".join(literal(t) for t in tokens[last + 1 :] if t != ",")
        simple = (prefix, suffix, sum(tokens[i] == "0" for i in int_slots))
    return _Plan(
        tokens=tokens,
        template=tuple(literal(t) if t not in ("0", "#", "?", ".", ",") else "" for t in tokens),
        exp_at=exp_at,
        dot=dot,
        scale=scale,
        percent=tokens.count("%"),
        grouping=any(t == "," and digits[0] < i < last for i, t in enumerate(tokens)),
        int_slots=int_slots,
        frac_slots=frac_slots,
        zero_int=any(tokens[i] == "0" for i in int_slots),
        simple=simple,
    )


@functools.lru_cache(maxsize=256)
def sections(code: str) -> list[str]:
    """A format's sections (``;`` outside quotes splits them)."""
    out, current = [], ""
    for token in _TOKEN.findall(code):
        if token == ";":
            out.append(current)
            current = ""
        else:
            current += token
    out.append(current)
    return out


@functools.lru_cache(maxsize=1024)
def _tokens(section: str) -> list[str]:
    return _TOKEN.findall(section)


def _condition(section: str) -> bool:
    return any(t.startswith("[") and t[1:2] in "<>=" for t in _tokens(section))


def literal(token: str) -> str:
    """What a format's literal token shows (a quoted text, an escaped character, a
    width as a space, a currency symbol; a colour or a fill nothing)."""
    if token.startswith('"'):
        return token[1:-1]
    if token.startswith("\\"):
        return token[1:]  # (a backslash that ends the format escapes nothing)
    if token.startswith("_"):
        return " "
    if token.startswith("*"):
        return ""
    if token.startswith("["):
        inner = token[1:-1]
        if inner.startswith("$"):  # [$£-809]: the currency symbol, then a locale id
            return inner[1:].split("-", 1)[0]
        return ""  # a colour
    return token


def general(value: float) -> str:
    """A number as the General format shows it: a whole number its digits, another its
    15 significant digits (:func:`~leadsync.reader.cells.float_text`: ``1E+20``), as
    Excel's "Save as CSV" writes a cell and as leadsync reads a General cell."""
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return float_text(float(value))


def _number(value: float, plan: _Plan) -> str | None:
    """The number under one section's placeholders (``value`` is not negative)."""
    tokens = plan.tokens
    if plan.exp_at is not None:
        return _scientific(value, list(tokens), plan.exp_at)
    if plan.simple is not None:
        return _simple(value, plan, *plan.simple)
    dot, int_slots, frac_slots, grouping = plan.dot, plan.int_slots, plan.frac_slots, plan.grouping
    amount = Decimal(repr(float(value)))
    if plan.percent or plan.scale:
        amount = amount * (100**plan.percent) / (1000**plan.scale)
    rounded = amount.quantize(_QUANTA[len(frac_slots)], ROUND_HALF_UP, _EXACT)
    whole, _, frac = f"{rounded:f}".partition(".")
    if whole == "0" and not plan.zero_int:
        whole = ""
    out = list(plan.template)
    if dot is not None:
        out[dot] = "."
    # integer placeholders take digits from the right; extra digits go to the leftmost
    pending = whole
    for n, i in enumerate(reversed(int_slots)):
        if n == len(int_slots) - 1:
            fill = pending or ("0" if tokens[i] == "0" else " " if tokens[i] == "?" else "")
            out[i], pending = fill, ""
        elif pending:
            out[i], pending = pending[-1], pending[:-1]
        else:
            out[i] = {"0": "0", "?": " "}.get(tokens[i], "")
    if grouping and int_slots:
        literal_inside = any(
            out[i] and tokens[i] not in ("0", "#", "?", ",")
            for i in range(int_slots[0], int_slots[-1] + 1)
        ) if int_slots else False  # fmt: skip
        if literal_inside:
            return None
        span = "".join(out[int_slots[0] : int_slots[-1] + 1]) if int_slots else ""
        grouped = _group(span)
        for i in range(int_slots[0], int_slots[-1] + 1):
            out[i] = ""
        out[int_slots[0]] = grouped
    frac_digits = frac.ljust(len(frac_slots), "0")
    for n, i in enumerate(frac_slots):
        out[i] = frac_digits[n]
    # '#' after the point drops trailing zeros; '?' shows them as spaces
    for i in reversed(frac_slots):
        if out[i] != "0" or tokens[i] == "0":
            break
        out[i] = "" if tokens[i] == "#" else " "
    return "".join(out)


def _simple(value: float, plan: _Plan, prefix: str, suffix: str, zeros: int) -> str:
    """:func:`_number` for the common shape (``plan.simple``)."""
    places = len(plan.frac_slots)
    if not places and not plan.percent and not plan.scale and float(value).is_integer():
        whole, frac = int(value), ""
    else:
        amount = Decimal(repr(float(value)))
        if plan.percent or plan.scale:
            amount = amount * (100**plan.percent) / (1000**plan.scale)
        text = f"{amount.quantize(_QUANTA[places], ROUND_HALF_UP, _EXACT):f}"
        head, _, frac = text.partition(".")
        whole = int(head)
    if plan.grouping:
        digits = format(whole, f"0{zeros + (zeros - 1) // 3},") if zeros else f"{whole:,}"
    else:
        digits = format(whole, f"0{zeros}d")
    if whole == 0 and not zeros:
        digits = ""
    return f"{prefix}{digits}.{frac}{suffix}" if plan.dot is not None else prefix + digits + suffix


def _group(digits: str) -> str:
    head = digits.lstrip(" ")
    pad = digits[: len(digits) - len(head)]
    if not head.isdigit():
        return digits
    return pad + f"{int(head):,}".rjust(len(head) + (len(head) - 1) // 3, "0")


def _scientific(value: float, tokens: list[str], exp_at: int) -> str | None:
    mantissa = [t for t in tokens[:exp_at] if t in ("0", "#", "?", ".")]
    exponent = [t for t in tokens[exp_at + 1 :] if t in ("0", "#", "?")]
    if not exponent or any(t not in ("0", "#", "?", ".") for t in tokens[:exp_at]):
        return None
    whole = mantissa.index(".") if "." in mantissa else len(mantissa)
    if whole != 1:
        return None  # engineering notation (##0.0E+0) moves the point in threes
    decimals = max(len(mantissa) - whole - 1, 0)  # 0E+00: no point, no decimals
    text = f"{float(value):.{decimals}E}"
    base, power = text.split("E")
    sign = "-" if int(power) < 0 else ("+" if tokens[exp_at][1] == "+" else "")
    rest = "".join(literal(t) for t in tokens[exp_at + 1 + len(exponent) :])
    return f"{base}E{sign}{str(abs(int(power))).zfill(len(exponent))}{rest}"


def shown_number(value: float, code: str) -> str | None:
    """What a number shows under ``code``; None where it is read as it is (not a number
    format, one leadsync cannot show, or the text General would show). The reader asks
    through :func:`leadsync.reader.datefmt.formatted`, which remembers the answers."""
    if kind(code) != "number":
        return None
    text = render(value, code)
    return None if text is None or text == general(value) else text
