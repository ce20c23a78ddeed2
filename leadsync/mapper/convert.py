"""Cell values → JSON values, one conversion per field type (spec §3): integers,
booleans, dates and date-times, JSON cells, lead ids. A cell that cannot be converted
becomes a :class:`Bad` value, never an exception."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from leadsync.config import Config
from leadsync.fields import (
    Field,
    Kind,
)
from leadsync.model import Code
from leadsync.reader import Shown, cell_text


class Bad:
    """A cell that could not be converted (a value, not an exception)."""

    __slots__ = ("code", "message")

    def __init__(self, code: Code, message: str) -> None:
        self.code, self.message = code, message


BLANK: Any = object()  # a blank cell: leave the field unchanged


TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1", "✓", "✔", "☑"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0", "✗", "✘", "☐"})
_INT_RE = re.compile(r"[+]?\d+(?:\.0*)?")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
# A whole number written through a float (1001.0): a script's export of a numeric id
_FLOAT_ID_RE = re.compile(r"([0-9]+)\.0+")
FLOAT_ID_RE2 = r"^([0-9]+)\.0+$"  # the same, in RE2 syntax for pyarrow


def lead_id_text(value: Any) -> str:
    """The lead id as text (``1001`` from a workbook, ``" 1001 "`` or ``1001.0`` from a
    CSV → ``1001``)."""
    text = cell_text(value.value if value.__class__ is Shown else value)
    m = _FLOAT_ID_RE.fullmatch(text) if "." in text else None
    return m.group(1) if m else text


def lead_id_texts(cells: Any) -> Any:
    """:func:`lead_id_text` for a whole column (``Cells``): a pyarrow string array."""
    import pyarrow.compute as pc

    from leadsync.columnar import trimmed

    text = trimmed(cells)
    if bool((cells.data == 0x2E).any()):  # a "." somewhere: maybe a 1001.0
        text = pc.replace_substring_regex(text, FLOAT_ID_RE2, r"\1")
    return text


def lead_id_missing(cells: Any) -> Any:
    """The rows whose lead id reads as none (:func:`lead_id_text` gives ``""``: a blank
    cell, or one of spaces), for a whole column (``Cells``): a numpy bool array."""
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool, trimmed

    if bool((cells.blank | cells.plain).all()):
        return cells.blank
    return to_numpy_bool(pc.equal(pc.utf8_length(trimmed(cells)), 0))


def convert_value(value: Any, spec: Field, config: Config) -> Any:
    """Convert one cell (or a mapped/default value) to the JSON value of ``spec``."""
    value = _prepared(value, spec)
    if value is BLANK:
        return BLANK
    kind = spec.kind
    if kind is Kind.STRING:
        text = cell_text(value)
        return to_choice(text, spec.choices) if spec.choices else text
    if kind is Kind.INTEGER:
        return to_integer(value)
    if kind is Kind.BOOLEAN:
        return to_boolean(value)
    if kind is Kind.DATE:
        return to_iso_date(value, config)
    if kind is Kind.QUESTIONNAIRE or kind is Kind.META:
        parsed = value if isinstance(value, (list, dict)) else _json_cell(cell_text(value), spec)
        return BLANK if parsed in ([], {}) else parsed
    raise AssertionError(kind)  # pragma: no cover


def convert_column(
    values: list[Any], spec: Field, config: Config, date1904: bool = False
) -> list[Any]:
    """:func:`convert_value` of every cell of a column (a date column in one go;
    ``date1904``: the cells are of a workbook in the 1904 date system)."""
    if spec.kind is not Kind.DATE:
        return [convert_value(v, spec, config) for v in values]
    prepared = [_prepared(v, spec) for v in values]
    todo = [i for i, v in enumerate(prepared) if v is not BLANK]
    dates = to_iso_dates([prepared[i] for i in todo], config, date1904)
    for i, value in zip(todo, dates, strict=True):
        prepared[i] = value
    return prepared


def _prepared(value: Any, spec: Field) -> Any:
    """A cell as its conversion takes it: trimmed text, a formatted number's number
    (only text fields take what it shows), or :data:`BLANK`."""
    if value.__class__ is Shown and spec.kind is not Kind.STRING:
        value = value.value
    if isinstance(value, str):
        value = value.strip()
        return value if value else BLANK
    if value is None or (isinstance(value, float) and value != value):
        return BLANK
    return value


def to_choice(text: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` as people write it: ``Sale``, ``Rightmove Valuation``,
    ``On The Market``, ``rightmove-valuation`` -> the API's word; anything else as it is
    (the validator names the allowed values)."""
    squeezed = "".join(ch for ch in text.casefold() if ch not in " _-")
    for choice in choices:
        if choice.replace("_", "") == squeezed:
            return choice
    return text


_GROUPED_RE = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.0+)?")


def to_integer(value: Any) -> Any:
    """``375``, ``375.0``, ``"375"`` and ``"1,213"`` → the number; ``375.5`` and
    ``"abc"`` → :class:`Bad`."""
    if isinstance(value, bool):
        return Bad(Code.NOT_A_NUMBER, f"expected a whole number, got {cell_text(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return Bad(Code.NOT_WHOLE_NUMBER, f"{cell_text(value)} is not a whole number")
    text = cell_text(value)
    if _GROUPED_RE.fullmatch(text):  # 1,213: a number cell formatted #,##0, saved as CSV
        text = text.replace(",", "")
    if _INT_RE.fullmatch(text):
        return int(text.split(".")[0])
    if _DECIMAL_RE.fullmatch(text):
        return Bad(Code.NOT_WHOLE_NUMBER, f"{text} is not a whole number")
    return Bad(Code.NOT_A_NUMBER, f"expected a whole number, got {text!r}")


def to_boolean(value: Any) -> Any:
    """yes/no, y/n, true/false, 1/0, ✓/✗ (any case), or a real boolean cell."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = cell_text(value).casefold()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return Bad(
        Code.INVALID_BOOLEAN, f"expected yes/no, true/false or 1/0, got {cell_text(value)!r}"
    )


DATE_FORMS_HINT = "2025-07-12, 12/07/2025 or 2025-07-12 14:30"  # the bad-date message's


def to_iso_date(value: Any, config: Config) -> Any:
    """A date as ``YYYY-MM-DD``; a date-time as UTC ``YYYY-MM-DDTHH:MM:SSZ``: one cell
    through :func:`to_iso_dates`."""
    return to_iso_dates([value], config)[0]


def to_iso_dates(values: list[Any], config: Config, date1904: bool = False) -> list[Any]:
    """Each cell of a date field converted (:func:`~leadsync.mapper.dates.parse_dates`
    reads the text; a date or date-time cell is read as its ISO text, so it takes the
    same conversion): the API's text, or :class:`Bad`. Cells must not be blank."""
    import pyarrow as pa

    from leadsync.mapper.dates import DATE_OK, NOT_REAL, parse_dates

    # a date or date-time cell as the text it shows, a number as its digits (an Excel
    # serial); a flag is not a date
    texts = [
        cell_text(v)
        if isinstance(v, (dt.date, str, int, float)) and v is not True and v is not False
        else None
        for v in values
    ]
    parsed = parse_dates(pa.array([t or "" for t in texts], pa.string()), config.date_order,
                         config.timezone, date1904)  # fmt: skip
    out: list[Any] = []
    for value, text, iso, status, shown in zip(
        values,
        texts,
        parsed.iso.to_pylist(),
        parsed.status.tolist(),
        parsed.text.to_pylist(),
        strict=True,
    ):
        if status == DATE_OK:
            out.append(iso)
        elif text is None:
            out.append(Bad(Code.INVALID_DATE, f"expected a date, got {cell_text(value)!r}"))
        elif status == NOT_REAL:
            out.append(Bad(Code.INVALID_DATE, f"{shown!r} is not a real date"))
        else:
            out.append(Bad(Code.INVALID_DATE, f"{shown!r} is not a date: use {DATE_FORMS_HINT}"))
    return out


def _json_cell(text: str, spec: Field) -> Any:
    try:
        # NaN, Infinity and numbers too big for a float are not JSON the API accepts
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        shape = (
            "[[question, answer], ...]" if spec.kind is Kind.QUESTIONNAIRE else '{"key": "value"}'
        )
        return Bad(Code.INVALID_JSON, f"{spec.name} is not valid JSON ({why}); expected {shape}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large a number")
    return value


def mapped_value(value: Any, fname: str, config: Config) -> Any:
    """Apply the mapping file's value map for ``fname`` (trimmed, any case)."""
    table = config.values.get(fname)
    if not table:
        return value
    return table.get(value_map_key(value), value)


def fills_blank_cells(config: Config) -> bool:
    """Whether a value map of the mapping file gives a blank cell a value (a key
    ``""``): only then does a blank cell need converting."""
    return any("" in table for table in config.values.values())


def value_map_key(value: Any) -> str:
    """The key a cell is looked up by in a value map: its text, trimmed, any case."""
    return cell_text(value).casefold()
