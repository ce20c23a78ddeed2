"""Mapper stage: spreadsheet columns → API fields, cell values → JSON values (spec §3).

The mapper decides what each column means (:func:`plan_columns`, once per file) and then
converts each chunk column by column (:func:`map_chunk`). A blank cell leaves its field
out of the payload; a cell that cannot be converted becomes a :class:`Problem`, never an
exception. The API's own rules (lengths, sizes, shapes) are the validator's business.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from leadsync.config import IGNORE, Config
from leadsync.errors import InputError, MappingError
from leadsync.fields import (
    FIELD_KEYS,
    FIELD_NAMES,
    FIELDS_BY_NAME,
    ID_ALIASES,
    ID_HEADER,
    Field,
    Kind,
    normalise_header,
)
from leadsync.model import ColumnPlan, MappedRow, Problem, Target, report_prefix
from leadsync.reader import EXCEL_ERRORS, Chunk, Table, cell_text, column_letter, excel_error


class Bad:
    """A cell that could not be converted (a value, not an exception)."""

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message


BLANK: Any = object()  # a blank cell: leave the field unchanged


# -- planning -----------------------------------------------------------------------


def plan_columns(headers: tuple[str, ...], config: Config) -> ColumnPlan:
    """Decide what every header maps to; raise :class:`InputError` for a file-level fault."""
    prefix = report_prefix(headers)
    targets: list[Target | None] = [Target("ignore")] * prefix
    for header in headers[prefix:]:
        targets.append(_target_for(header, config))
    seen: dict[tuple[str, str], int] = {}
    for i, t in enumerate(targets):
        if t is None or t.kind == "ignore":
            continue
        key = (t.kind, t.name)
        if key in seen:
            what = "the lead id" if t.kind == "id" else _target_text(t)
            first = seen[key]
            raise InputError(
                f"columns {headers[first]!r} ({column_letter(first)}) and {headers[i]!r} "
                f"({column_letter(i)}) both map to {what}: rename one, or map it to "
                "'ignore' in the mapping file"
            )
        seen[key] = i
    id_index = seen.get(("id", ID_HEADER))
    match_index = seen.get(("match", config.match_by or ""))
    if config.match_by is not None and match_index is None:
        raise InputError(
            f"--match-by {config.match_by} needs a column headed {config.match_by!r} "
            "(or map yours to it in the mapping file)"
        )
    if id_index is None and match_index is None:
        raise InputError(
            "no lead id column: add a column headed 'id', 'lead_id' or 'Lead ID', or map "
            'your id column in the mapping file ([columns] "Your header" = "id")'
        )
    defaults = {}
    for fname, raw in config.defaults.items():
        value = convert_value(raw, FIELDS_BY_NAME[fname], config)
        if isinstance(value, Bad):
            raise MappingError(f"[defaults] {fname} = {raw!r}: {value.message}")
        defaults[fname] = value
    unmapped = tuple(h for h, t in zip(headers, targets, strict=True) if t is None)
    return ColumnPlan(
        headers,
        tuple(targets),
        id_index,
        unmapped,
        defaults,
        report_row_index=0 if prefix else None,
    )


def plan_table(table: Table, config: Config) -> ColumnPlan:
    """:func:`plan_columns` for an opened file. When it has no id column but one of its
    first rows would have been a header with one (a title above the real header), the
    error says which row."""
    try:
        return plan_columns(table.headers, config)
    except InputError as exc:
        if not str(exc).startswith("no lead id column"):
            raise
        for number, cells in table.first_rows(10):
            targets = (_target_for(cell_text(c), config) for c in cells if cell_text(c))
            if any(t is not None and t.kind == "id" for t in targets):
                raise InputError(
                    f"no lead id column in row {table.header_row}, the header row; row "
                    f"{number} looks like the header: delete the rows above it"
                ) from None
        raise


def _target_for(header: str, config: Config) -> Target | None:
    norm = normalise_header(header)
    mapped = config.columns.get(norm)
    text = mapped if mapped is not None else header.strip()
    prefix, sep, rest = text.partition(":")
    if not sep and "." in text and mapped is None:
        prefix, sep, rest = text.partition(".")
        if normalise_header(prefix) != "meta":
            prefix, sep, rest = text, "", ""
    if sep and rest.strip():
        kind = normalise_header(prefix)
        if kind == "questionnaire":
            return Target("question", rest.strip())
        if kind == "meta":
            return Target("meta", rest.strip())
    key = normalise_header(text)
    if key == IGNORE and mapped is not None:
        return Target("ignore")
    if key in ID_ALIASES:
        return Target("id", ID_HEADER)
    if key in FIELD_KEYS:
        return Target("field", FIELD_KEYS[key])
    if config.match_by is not None and key in MATCH_ALIASES[config.match_by]:
        return Target("match", config.match_by)
    return None


# contact-detail headers that --match-by looks leads up by (they are not update fields)
MATCH_ALIASES = {
    "email": frozenset({"email", "emailaddress"}),
    "phone": frozenset({"phone", "phonenumber", "mobile", "telephone"}),
}


def _target_text(t: Target) -> str:
    if t.kind == "question":
        return f"the question {t.name!r}"
    if t.kind == "meta":
        return f"meta key {t.name!r}"
    return t.name


# -- cell conversion ----------------------------------------------------------------

_TRUE = frozenset({"yes", "y", "true", "t", "1", "✓", "✔", "☑"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "✗", "✘", "☐"})
_INT_RE = re.compile(r"[+]?\d+(?:\.0*)?")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_NUMERIC_DATE_RE = re.compile(
    r"(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?)?"
)
_MONTHS = {
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
_NAMED_DATE_RE = re.compile(
    r"(?:(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]+)\.?,?\s+(\d{4})"
    r"|([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4}))"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)


# A whole number written through a float (1001.0): a script's export of a numeric id
_FLOAT_ID_RE = re.compile(r"([0-9]+)\.0+")
FLOAT_ID_RE2 = r"^([0-9]+)\.0+$"  # the same, in RE2 syntax for pyarrow


def lead_id_text(value: Any) -> str:
    """The lead id as text (``1001`` from a workbook, ``" 1001 "`` or ``1001.0`` from a
    CSV → ``1001``)."""
    text = cell_text(value)
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


def convert_value(value: Any, spec: Field, config: Config) -> Any:
    """Convert one cell (or a mapped/default value) to the JSON value of ``spec``."""
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return BLANK
    elif value is None or (isinstance(value, float) and value != value):
        return BLANK
    kind = spec.kind
    if kind is Kind.STRING:
        return cell_text(value)
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


def to_integer(value: Any) -> Any:
    """``375``, ``375.0`` and ``"375"`` → 375; ``375.5`` and ``"abc"`` → :class:`Bad`."""
    if isinstance(value, bool):
        return Bad("not_a_number", f"expected a whole number, got {cell_text(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return Bad("not_whole_number", f"{format(value, '.15g')} is not a whole number")
    text = cell_text(value)
    if _INT_RE.fullmatch(text):
        return int(text.split(".")[0])
    if _DECIMAL_RE.fullmatch(text):
        return Bad("not_whole_number", f"{text} is not a whole number")
    return Bad("not_a_number", f"expected a whole number, got {text!r}")


def to_boolean(value: Any) -> Any:
    """yes/no, y/n, true/false, 1/0, ✓/✗ (any case), or a real boolean cell."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = cell_text(value).casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return Bad("invalid_boolean", f"expected yes/no, true/false or 1/0, got {cell_text(value)!r}")


def to_iso_date(value: Any, config: Config) -> Any:
    """A date as ``YYYY-MM-DD``; a date-time as UTC ``YYYY-MM-DDTHH:MM:SSZ``.

    A date without a time is never pushed through a time zone (that shifts the day);
    a naive date-time is read in the configured zone.
    """
    if isinstance(value, dt.datetime):
        return _utc_text(value, config)
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        return Bad("invalid_date", f"expected a date, got {cell_text(value)!r}")
    text = " ".join(value.split())
    try:
        if _ISO_DATE_RE.fullmatch(text):
            return dt.date.fromisoformat(text).isoformat()
        if _ISO_DATETIME_RE.fullmatch(text):
            iso = text.replace(",", ".").replace(" Z", "Z").replace(" +", "+")
            iso = re.sub(r"([T ])(\d):", r"\g<1>0\2:", iso)
            return _utc_text(dt.datetime.fromisoformat(iso), config)
        m = _NUMERIC_DATE_RE.fullmatch(text)
        if m:
            return _numeric_date(m, config)
        m = _NAMED_DATE_RE.fullmatch(text)
        if m:
            return _named_date(m, config)
    except ValueError:
        return Bad("invalid_date", f"{text!r} is not a real date")
    return Bad(
        "invalid_date",
        f"{text!r} is not a date: use 2025-07-12, 12/07/2025 or 2025-07-12 14:30",
    )


def _numeric_date(m: re.Match[str], config: Config) -> str:
    a, b, c, hh, mi, ss, ampm = m.groups()
    if len(a) == 4:
        y, mo, d = int(a), int(b), int(c)
    elif len(c) in (2, 4) and len(a) <= 2:
        y = int(c) if len(c) == 4 else 2000 + int(c)
        first, second = int(a), int(b)
        if config.date_order == "MDY":
            mo, d = first, second
        else:  # DMY, and YMD can't start with a 1-2 digit year here
            d, mo = first, second
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
    naive = dt.datetime.combine(date, dt.time(hour, int(mi), int(ss or 0)))
    return _utc_text(naive, config)


def _named_date(m: re.Match[str], config: Config) -> str:
    d1, mon1, y1, mon2, d2, y2, hh, mi, ss = m.groups()
    day, month_name, year = (d1, mon1, y1) if d1 else (d2, mon2, y2)
    month = _MONTHS.get(month_name.lower())
    if month is None:
        raise ValueError(month_name)
    date = dt.date(int(year), month, int(day))
    if hh is None:
        return date.isoformat()
    naive = dt.datetime.combine(date, dt.time(int(hh), int(mi), int(ss or 0)))
    return _utc_text(naive, config)


def _utc_text(value: dt.datetime, config: Config) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=config.tz)
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_cell(text: str, spec: Field) -> Any:
    try:
        # NaN, Infinity and numbers too big for a float are not JSON the API accepts
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except ValueError as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        shape = (
            "[[question, answer], ...]" if spec.kind is Kind.QUESTIONNAIRE else '{"key": "value"}'
        )
        return Bad("invalid_json", f"{spec.name} is not valid JSON ({why}); expected {shape}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large a number")
    return value


def _mapped(value: Any, fname: str, config: Config) -> Any:
    """Apply the mapping file's value map for ``fname`` (trimmed, any case)."""
    table = config.values.get(fname)
    if not table:
        return value
    key = cell_text(value).casefold()
    return table.get(key, value)


# -- chunks -------------------------------------------------------------------------


def map_chunk(chunk: Chunk, plan: ColumnPlan, config: Config) -> list[MappedRow]:
    """Map every row of ``chunk``; problems are collected on the rows, never raised."""
    n = len(chunk)
    columns = [chunk.values(j) for j in range(len(chunk.columns))]
    if plan.report_row_index is not None:
        from leadsync.csvsafe import unneutralise

        columns = [[unneutralise(v) if isinstance(v, str) else v for v in c] for c in columns]
    ids = (
        [lead_id_text(v) for v in columns[plan.id_index]] if plan.id_index is not None else [""] * n
    )
    rows = [
        MappedRow(row=r, lead_id=ids[i] or None, payload={})
        for i, r in enumerate(chunk.row_numbers)
    ]
    has_data = [False] * n
    for j, target in enumerate(plan.targets):
        if target is None or target.kind in ("ignore", "id"):
            continue
        if target.kind == "match":
            for i, cell in enumerate(columns[j]):
                shown = excel_error(cell)
                if shown is not None:
                    rows[i].problems.append(_cell_problem(rows[i], _excel_error(shown), plan, j))
                    continue
                rows[i].match = cell_text(cell) or None
            continue
        column = columns[j]
        convert = _column_converter(target, config)
        for i, cell in enumerate(column):
            shown = excel_error(cell)
            value = convert(cell) if shown is None else _excel_error(shown)
            if value is BLANK:
                continue
            has_data[i] = True
            row = rows[i]
            if isinstance(value, Bad):
                row.problems.append(_cell_problem(row, value, plan, j))
                continue
            _place(row, target, value, j)
    for i, row in enumerate(rows):
        if not has_data[i]:
            row.blank = True
            continue
        for fname, value in plan.defaults.items():
            row.payload.setdefault(fname, value)
        # fields in catalogue order, whatever the column order (one payload, one JSON text)
        row.payload = {k: row.payload[k] for k in FIELD_NAMES if k in row.payload}
        spill = chunk.extra_cells.get(i)
        if spill:
            row.problems.append(
                Problem(
                    row=row.row,
                    code="extra_cells",
                    stage="read",
                    message=f"{spill} cell(s) beyond the last header column: add a header "
                    "or remove them",
                )
            )
    return rows


def _cell_problem(row: MappedRow, bad: Bad, plan: ColumnPlan, j: int) -> Problem:
    """The problem with the cell of ``row`` in column ``j`` (no field for a match column)."""
    target = plan.targets[j]
    return Problem(
        row=row.row,
        code=bad.code,
        message=bad.message,
        field=(target.field if target is not None else "") or None,
        column=plan.headers[j],
        column_index=j,
    )


def _excel_error(shown: str) -> Bad:
    return Bad(
        "excel_error",
        f"the cell shows the Excel error {shown}: fix the formula behind it, or clear the cell",
    )


def _column_converter(target: Target, config: Config) -> Callable[[Any], Any]:
    if target.kind == "field":
        spec = FIELDS_BY_NAME[target.name]
        if config.values.get(target.name):
            return lambda cell: convert_value(_mapped(cell, spec.name, config), spec, config)
        return lambda cell: convert_value(cell, spec, config)
    if target.kind == "question":
        table = config.values.get("questionnaire")
        return lambda cell: _answer(_mapped(cell, "questionnaire", config) if table else cell)
    return _answer  # meta value: text


def _answer(cell: Any) -> Any:
    text = cell_text(cell)
    return text if text else BLANK


def _place(row: MappedRow, target: Target, value: Any, column: int) -> None:
    payload = row.payload
    if target.kind == "field":
        if target.name == "questionnaire" and "questionnaire" in payload:
            if isinstance(value, list):
                payload["questionnaire"] = value + payload["questionnaire"]
            else:
                payload["questionnaire"] = value  # wrong shape: the validator says so
        elif target.name == "meta" and "meta" in payload and isinstance(value, dict):
            payload["meta"] = {**value, **payload["meta"]}
        else:
            payload[target.name] = value
        row.sources[target.name] = column
    elif target.kind == "question":
        existing = payload.setdefault("questionnaire", [])
        if isinstance(existing, list):
            existing.append([target.name, value])
        row.sources.setdefault("questionnaire", column)
    elif target.kind == "meta":
        existing = payload.setdefault("meta", {})
        if isinstance(existing, dict):
            existing[target.name] = value
        row.sources.setdefault("meta", column)


# -- the columnar fast path ---------------------------------------------------------
#
# The same mapping as map_chunk, done a column at a time for the rows whose every cell
# is plain (see leadsync.columnar). A row it cannot vouch for is not "simple" and goes
# through map_chunk; the tests hold the two paths to identical verdicts and payloads.

_TRUE_ASCII = sorted(t for t in _TRUE if t.isascii())
_FALSE_ASCII = sorted(f for f in _FALSE if f.isascii())


@dataclass
class ColumnarRows:
    """One chunk mapped column by column."""

    simple: Any  # numpy bool per row: the fast path vouches for every cell of the row
    blank: Any  # numpy bool per row: every mapped cell empty (skipped_blank)
    ids: Any  # Cells of the id column, or None
    cells: dict[str, Any]  # field -> the Cells of its column (a blank cell: not present)
    # field -> a function giving the JSON text of each value: built only when a payload
    # is wanted (sync), not to validate
    literals: dict[str, Callable[[], Any]]
    answers: list[tuple[str, Any]]  # (question, Cells) in column order
    meta: list[tuple[str, Any]]  # (meta key, Cells) in column order


def fast_path_applies(plan: ColumnPlan, config: Config) -> bool:
    """Whether the columnar path can map this file (else every row goes row by row)."""
    return (
        plan.report_row_index is None
        and plan.match_index is None
        and config.match_by is None
        and "questionnaire" not in plan.defaults
        and "meta" not in plan.defaults
    )


def map_columns(chunk: Chunk, plan: ColumnPlan, config: Config) -> ColumnarRows:
    """Map ``chunk`` column by column; rows it cannot vouch for come back not simple."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(chunk)
    simple = np.ones(n, dtype=bool)
    blank = np.ones(n, dtype=bool)
    literals: dict[str, Callable[[], Any]] = {}
    by_field: dict[str, Any] = {}
    answers: list[tuple[str, Any]] = []
    meta: list[tuple[str, Any]] = []
    ids = chunk.cells(plan.id_index) if plan.id_index is not None else None
    for j, target in enumerate(plan.targets):
        if target is None or target.kind in ("ignore", "id", "match"):
            continue
        cells = chunk.cells(j)
        blank &= cells.blank
        simple &= ~_maybe_excel_error(cells)
        name = target.field
        if config.values.get(name):
            simple &= cells.blank  # value maps: row by row
            continue
        if target.kind == "question":
            simple &= cells.blank | cells.plain
            answers.append((target.name, cells))
            continue
        if target.kind == "meta":
            simple &= cells.blank | cells.plain
            meta.append((target.name, cells))
            continue
        kind = FIELDS_BY_NAME[name].kind
        by_field[name] = cells
        if kind is Kind.STRING:
            simple &= cells.blank | cells.plain
            literals[name] = cells.json_string
        elif kind is Kind.INTEGER:
            simple &= cells.blank | cells.whole_number
            literals[name] = partial(getattr, cells, "array")
        elif kind is Kind.BOOLEAN:
            lower = pc.ascii_lower(cells.array)
            yes = pc.is_in(lower, value_set=pa.array(_TRUE_ASCII)).to_numpy(zero_copy_only=False)
            no = pc.is_in(lower, value_set=pa.array(_FALSE_ASCII)).to_numpy(zero_copy_only=False)
            simple &= cells.blank | yes | no
            literals[name] = partial(pc.if_else, pa.array(yes), "true", "false")
        elif kind is Kind.DATE:
            ok, iso = _fast_dates(cells, config)
            simple &= cells.blank | ok
            literals[name] = partial(pc.binary_join_element_wise, '"', iso, '"', "")
        else:  # a JSON questionnaire/meta column: row by row
            simple &= cells.blank
    simple[list(chunk.extra_cells)] = False  # cells beyond the header: row by row
    return ColumnarRows(simple, blank, ids, by_field, literals, answers, meta)


def _maybe_excel_error(cells: Any) -> Any:
    """Cells that may show an Excel error (#N/A): they go row by row, which says so.
    Other text starting with "#" (a #hashtag campaign) stays on the fast path."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    hashed = cells.first_byte == 0x23
    if not hashed.any():
        return hashed
    where = np.flatnonzero(hashed & cells.ascii)
    upper = pc.ascii_upper(cells.array.take(pa.array(where, pa.int64())))
    known = pc.is_in(upper, value_set=pa.array(sorted(EXCEL_ERRORS), pa.string()))
    hashed[where] = known.to_numpy(zero_copy_only=False)  # non-ASCII ones stay doubtful
    return hashed


def _fast_dates(cells: Any, config: Config) -> tuple[Any, Any]:
    """Which cells are plain dates (2025-07-12, or 12/07/2025 in the configured order)
    and each as ``YYYY-MM-DD`` (a pyarrow array; "" where not a date)."""
    import numpy as np
    import pyarrow as pa

    n = len(cells)
    ok = np.zeros(n, dtype=bool)
    candidates = np.flatnonzero(cells.ascii & (cells.nbytes == 10))
    if not candidates.size:
        return ok, pa.array([""] * n, pa.string())
    text = cells.data[cells.offsets[:-1][candidates, None] + np.arange(10)]  # k x 10 bytes
    iso = (text[:, 4] == 0x2D) & (text[:, 7] == 0x2D)
    slashed = (text[:, 2] == 0x2F) & (text[:, 5] == 0x2F)
    # the ten bytes in ISO order, YYYY-MM-DD (slashed dates reordered, by whole columns)
    if config.date_order == "MDY":
        slash_order = [6, 7, 8, 9, 5, 0, 1, 2, 3, 4]
    else:
        slash_order = [6, 7, 8, 9, 5, 3, 4, 2, 0, 1]
    out = text.copy()
    if slashed.any():
        out[slashed] = text[slashed][:, slash_order]
    out[:, 4] = out[:, 7] = 0x2D
    d = out[:, [0, 1, 2, 3, 5, 6, 8, 9]].astype(np.int16) - 0x30  # the eight digits
    numeric = ((d >= 0) & (d <= 9)).all(axis=1)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int16)
    last = month_days[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    good = (iso | slashed) & numeric & (year >= 1) & (month >= 1) & (month <= 12)
    good &= (day >= 1) & (day <= last)
    ok[candidates[good]] = True
    lengths = np.where(ok, 10, 0)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.ascontiguousarray(out[good]).tobytes()
    array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    return ok, array


def payload_json(rows: ColumnarRows, plan: ColumnPlan) -> Any:
    """Each row's payload as JSON text (``json.dumps`` of the reference payload); only
    meaningful for simple, non-blank rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(rows.simple)
    # Every piece carries its leading separator ("" where absent); the first separator
    # is cut off at the end. (pyarrow's null-skipping join drops all-null rows.)
    fragments: list[Any] = []
    for fname in FIELD_NAMES:
        if fname in ("questionnaire", "meta"):
            parts = rows.answers if fname == "questionnaire" else rows.meta
            if not parts:
                continue
            items = []
            for key, cells in parts:
                key_text = json.dumps(key, ensure_ascii=False)
                opening, closing = (
                    (f", [{key_text}, ", "]")
                    if fname == "questionnaire"
                    else (f", {key_text}: ", "")
                )
                item = pc.binary_join_element_wise(opening, cells.json_string(), closing, "")
                items.append(pc.if_else(pa.array(~cells.blank), item, ""))
            inner = _cut_separator(_concat(items))
            present = pc.greater(pc.binary_length(inner), 0)
            opening, closing = ("[", "]") if fname == "questionnaire" else ("{", "}")
            value = pc.binary_join_element_wise(f', "{fname}": {opening}', inner, closing, "")
            fragments.append(pc.if_else(present, value, ""))
            continue
        default = plan.defaults.get(fname)
        literal = rows.literals.get(fname)
        if literal is None and default is None:
            continue
        default_text = (
            "" if default is None else f', "{fname}": {json.dumps(default, ensure_ascii=False)}'
        )
        if literal is None:
            fragments.append(pa.array([default_text] * n, pa.string()))
            continue
        value = pc.binary_join_element_wise(f', "{fname}": ', literal(), "")
        fragments.append(pc.if_else(pa.array(~rows.cells[fname].blank), value, default_text))
    if not fragments:
        return pa.array(["{}"] * n, pa.string())
    return pc.binary_join_element_wise("{", _cut_separator(_concat(fragments)), "}", "")


def _concat(items: list[Any]) -> Any:
    import pyarrow.compute as pc

    return items[0] if len(items) == 1 else pc.binary_join_element_wise(*items, "")


def _cut_separator(text: Any) -> Any:
    import pyarrow.compute as pc

    return pc.utf8_slice_codeunits(text, 2)  # the leading ", "


def fields_sent(rows: ColumnarRows, plan: ColumnPlan) -> Any:
    """Each row's field names, comma-separated and ready for a CSV field (the rows of a
    file share a few patterns: each is built once)."""
    import numpy as np
    import pyarrow as pa

    from leadsync.columnar import csv_text

    n = len(rows.simple)
    bits = np.zeros(n, dtype=np.int64)
    present = {fname: ~cells.blank for fname, cells in rows.cells.items()}
    for fname, parts in (("questionnaire", rows.answers), ("meta", rows.meta)):
        if parts:
            present[fname] = np.logical_or.reduce([~cells.blank for _, cells in parts])
    order = [f for f in FIELD_NAMES if f in present or f in plan.defaults]
    for k, fname in enumerate(order):
        if fname in plan.defaults:
            bits |= 1 << k
        else:
            bits |= present[fname].astype(np.int64) << k
    patterns, inverse = np.unique(bits, return_inverse=True)
    texts = [
        csv_text(",".join(f for k, f in enumerate(order) if int(p) >> k & 1)) for p in patterns
    ]
    return pa.array(texts, pa.string()).take(pa.array(inverse.ravel()))
