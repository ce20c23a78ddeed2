"""Validator stage: the rules of the Lead API's docs (spec §1), applied to each payload.

:func:`check_payload` is the pure rule book, shared with the sandbox server so that the
client and the simulator can never disagree about what the API accepts. Every problem is
a value (row, column, field, stable code, message) collected on the row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from leadsync.config import Config
from leadsync.defaults import CHUNK_ROWS
from leadsync.fields import (
    CREATE_REQUIRED,
    FIELDS_BY_NAME,
    REQUIRED_NAMES,
    TYPE_NEEDS,
    TYPE_REFUSES,
    Field,
    Kind,
    Operation,
    json_size,
    update_part,
)
from leadsync.mapper import ColumnarRows, lead_id_text, lead_id_texts
from leadsync.model import Code, ColumnPlan, MappedRow, Problem
from leadsync.reader import Table, excel_error
from leadsync.threads import prefetch

# A lead id goes into the URL path. The API's ids are numbers in every example (they come
# from the create endpoint's answer); other accounts' may be tokens. So: 1-128 characters,
# ASCII letters, digits and - _ . ~ : (what a path segment carries as it is), starting
# with a letter or digit, without "..": nothing that could walk the path (`/`, `..`),
# start a query or fragment, or hide in whitespace.
LEAD_ID_RULE = "1-128 letters, digits and - _ . ~ :, starting with a letter or digit"
_LEAD_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:~-]{0,127}"
_LEAD_ID_RE = re.compile(_LEAD_ID_PATTERN)
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))?"
)

EXAMPLE_ID = "EXAMPLE"  # the id of the example row in `leadsync template`

# Control characters never belong in a lead's text (tab and line breaks may: addresses)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

FieldProblems = dict[str, list[tuple[str, str]]]  # field -> [(code, message)]

# The shapes of the create endpoint's contact fields. Loose on purpose (the API documents
# none): they catch a column in the wrong place (a phone number under Email, a name under
# Phone), not every address a mail server would refuse.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_PHONE_RE = re.compile(r"\+?[0-9 ()./-]+")
_URL_RE = re.compile(r"https?://[^\s/?#]+\.[^\s/?#]+(?:[/?#]\S*)?", re.IGNORECASE)
PHONE_DIGITS = (7, 15)  # E.164 allows at most 15; no real number has fewer than 7
_FORMS: dict[str, tuple[Code, str]] = {
    "email": (Code.INVALID_EMAIL, "is not an email address (name@example.com)"),
    "phone": (
        Code.INVALID_PHONE,
        f"is not a phone number ({PHONE_DIGITS[0]}-{PHONE_DIGITS[1]} digits, with "
        "+ ( ) - . or spaces at most)",
    ),
    "url": (Code.INVALID_URL, "is not a web address starting http:// or https://"),
}


def _has_form(value: str, form: str) -> bool:
    text = value.strip()
    if form == "email":
        return _EMAIL_RE.fullmatch(text) is not None
    if form == "phone":
        digits = sum(ch.isdigit() for ch in text)
        return bool(_PHONE_RE.fullmatch(text)) and PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]
    return _URL_RE.fullmatch(text) is not None


def check_lead_id(lead_id: str | None) -> tuple[str, str] | None:
    """``(code, message)`` if ``lead_id`` cannot be used in ``/leads/<id>``."""
    if not lead_id:
        return Code.ID_MISSING, "the lead id is blank: every row needs the id of the lead to update"
    shown = excel_error(lead_id)
    if shown is not None:
        return Code.EXCEL_ERROR, (
            f"the lead id cell shows the Excel error {shown}: fix the formula behind it"
        )
    if lead_id.casefold() == EXAMPLE_ID.casefold():
        return Code.ID_EXAMPLE, "this is the template's example row: delete it"
    if not _LEAD_ID_RE.fullmatch(lead_id) or ".." in lead_id:
        return Code.ID_INVALID, f"lead id {lead_id!r} is not a plain id ({LEAD_ID_RULE})"
    return None


def check_payload(
    payload: Mapping[str, Any],
    *,
    require_names: bool = True,
    statuses: Collection[str] | None = None,
    office_ids: Collection[int] | None = None,
    operation: Operation = Operation.UPDATE,
) -> FieldProblems:
    """Check a JSON payload against the API's rules for ``operation`` (an update's
    ``PATCH``, or a create's ``POST``); return the problems per field."""
    problems: FieldProblems = {}

    def add(fname: str, code: Code, message: str) -> None:
        problems.setdefault(fname, []).append((code, message))

    creating = operation is Operation.CREATE
    for fname, value in payload.items():
        spec = FIELDS_BY_NAME.get(fname)
        if spec is None:
            add(fname, Code.UNKNOWN_FIELD, f"{fname} is not a field of the Lead API")
            continue
        if not (spec.create if creating else spec.update):
            add(
                fname,
                Code.UNKNOWN_FIELD,
                f"{fname} is sent only when a lead is created (--create), not on an update",
            )
            continue
        if value is None:
            add(fname, Code.NULL, f"{fname} must not be null: leave the cell blank instead")
            continue
        kind = spec.kind
        if kind is Kind.STRING:
            if not isinstance(value, str):
                add(fname, Code.WRONG_TYPE, f"{fname} must be text")
                continue
            n = len(value)
            if not value.strip():
                # a blank means "leave unchanged": it is left out, never sent as ""
                add(fname, Code.BLANK, f"{fname} must not be empty or only spaces")
            elif spec.min_chars is not None and n < spec.min_chars:
                add(fname, Code.TOO_SHORT, f"{fname} needs at least {spec.min_chars} characters")
            bad = _CONTROL.search(value)
            if bad:
                add(
                    fname,
                    Code.CONTROL_CHARACTER,
                    f"{fname} contains an invisible control character (U+{ord(bad.group()):04X}): "
                    "retype the cell",
                )
            if spec.max_chars is not None and n > spec.max_chars:
                add(
                    fname,
                    Code.TOO_LONG,
                    f"{fname} has {n} characters; at most {spec.max_chars} allowed",
                )
            if fname == "status" and statuses is not None and value not in statuses:
                add(
                    fname,
                    Code.STATUS_NOT_ALLOWED,
                    f"status {value!r} is not one of: {', '.join(statuses)}",
                )
            _check_text_rules(spec, value, add)
        elif kind is Kind.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                add(fname, Code.WRONG_TYPE, f"{fname} must be a whole number")
            elif value < 1:
                add(fname, Code.INVALID_OFFICE_ID, f"{fname} {value} is not an office id")
            elif office_ids is not None and value not in office_ids:
                add(fname, Code.UNKNOWN_OFFICE, f"office {value} is not an office of this account")
        elif kind is Kind.BOOLEAN:
            if not isinstance(value, bool):
                add(fname, Code.WRONG_TYPE, f"{fname} must be true or false")
        elif kind is Kind.DATE:
            if not isinstance(value, str) or not _is_iso(value):
                add(fname, Code.INVALID_DATE, f"{fname} must be an ISO 8601 date string")
        elif kind is Kind.QUESTIONNAIRE:
            _check_questionnaire(value, add)
        elif kind is Kind.META:
            _check_meta(value, add)
    if creating:
        _check_create(payload, add)
    elif require_names:
        for fname in REQUIRED_NAMES:
            if fname not in payload:
                add(fname, Code.REQUIRED, f"{fname} is required: fill it in on every row")
    return problems


def _check_text_rules(spec: Field, value: str, add: Any) -> None:
    """A text field's own rules: one of its choices, or its shape (email, phone, url)."""
    if spec.choices and value not in spec.choices:
        add(
            spec.name,
            Code.NOT_ALLOWED,
            f"{spec.name} {value!r} is not one of: {', '.join(spec.choices)}",
        )
    elif spec.form is not None and value.strip() and not _has_form(value, spec.form):
        code, what = _FORMS[spec.form]
        add(spec.name, code, f"{spec.name} {value!r} {what}")


def _check_create(payload: Mapping[str, Any], add: Any) -> None:
    """The create rules: a type and a name always; then what the type needs and refuses."""
    for fname in CREATE_REQUIRED:
        if fname not in payload:
            add(fname, Code.REQUIRED, f"{fname} is required to create a lead")
    kind = payload.get("type")
    if not isinstance(kind, str):
        return
    for fname in TYPE_NEEDS.get(kind, ()):
        if fname not in payload:
            add(fname, Code.NOT_FOR_TYPE, f"a {kind} lead needs {fname}: fill it in")
    for fname in TYPE_REFUSES.get(kind, ()):
        if fname in payload:
            add(
                fname,
                Code.NOT_FOR_TYPE,
                f"a {kind} lead takes the person's own address and postcode only: "
                f"{fname} is for sale and let leads (leave it blank)",
            )


def _check_questionnaire(value: Any, add: Any) -> None:
    if not isinstance(value, list) or not value:
        add(
            "questionnaire",
            Code.WRONG_TYPE,
            "questionnaire must be a non-empty list of [question, answer] pairs",
        )
        return
    for i, item in enumerate(value, start=1):
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        ):
            add(
                "questionnaire",
                Code.QUESTIONNAIRE_ITEM,
                f"questionnaire item {i} must be exactly two strings: [question, answer]",
            )
            break
        if not item[0].strip() or not item[1].strip():
            add(
                "questionnaire",
                Code.QUESTIONNAIRE_ITEM,
                f"questionnaire item {i} has an empty question or answer",
            )
            break
    _check_size("questionnaire", value, add)  # every problem is reported, not just the first


def _check_meta(value: Any, add: Any) -> None:
    if not isinstance(value, dict) or not value:
        add("meta", Code.WRONG_TYPE, 'meta must be a non-empty object like {"key": "value"}')
        return
    for key, item in value.items():
        if not isinstance(item, str):
            add("meta", Code.META_VALUE, f"meta value of {key!r} must be text (put it in quotes)")
            return
    _check_size("meta", value, add)


def _check_size(fname: str, value: Any, add: Any) -> None:
    limit = FIELDS_BY_NAME[fname].max_json_bytes
    size = json_size(value)
    if limit is not None and size > limit:
        add(
            fname,
            Code.TOO_LARGE,
            f"{fname} is {size} bytes as JSON; at most {limit} allowed "
            "(accented letters and emoji count 6-12 bytes each)",
        )


def _is_iso(text: str) -> bool:
    m = _ISO_RE.fullmatch(text)
    if not m:
        return False
    try:
        y, mo, d, hh, mi, ss = m.groups()
        dt.date(int(y), int(mo), int(d))
        if hh is not None:
            dt.time(int(hh), int(mi), int(ss))
    except ValueError:
        return False
    return True


def validate_rows(
    rows: Iterable[MappedRow],
    plan: ColumnPlan,
    config: Config,
    duplicates: Collection[str] = frozenset(),
    office_ids: Collection[int] | None = None,
    people: Collection[str] = frozenset(),
) -> None:
    """Add the API's rule violations to each non-blank row's problems: an update's rules
    for a row with a lead id, a create's for one without under ``--create`` (with
    ``--match-by`` too: its lookup may find no lead, and then it is created)."""
    from leadsync.creating import person_key, shown_person

    for row in rows:
        if row.blank:
            # nothing to send; but a row that has an id, and a bad one, says so
            bad_id = check_lead_id(row.lead_id) if row.lead_id else None
            if bad_id is not None:
                row.blank = False
                row.problems.append(_problem(row, plan, "id", *bad_id))
            continue
        creating = config.create and row.lead_id is None
        bad_id = None if creating else check_lead_id(row.lead_id)
        if bad_id is not None and row.lead_id is None and config.match_by is not None:
            # no id: the lead is looked up by its email or phone when the row is sent
            unreadable = any(p.code == Code.EXCEL_ERROR and p.field is None for p in row.problems)
            bad_id = (
                None
                if row.match or unreadable  # an Excel error in its match column: said already
                else (
                    Code.ID_MISSING,
                    f"the row has neither a lead id nor {_article(config.match_by)} "
                    f"{config.match_by} to find the lead by",
                )
            )
        if bad_id is not None:
            row.problems.append(_problem(row, plan, "id", *bad_id))
        elif row.lead_id in duplicates:
            row.problems.append(
                _problem(
                    row,
                    plan,
                    "id",
                    Code.ID_DUPLICATE,
                    f"lead {row.lead_id} appears on more than one row: merge them into one row",
                )
            )
        if creating and people and (person := person_key(row.payload)) in people:
            row.problems.append(
                _problem(
                    row,
                    plan,
                    "id",
                    Code.PERSON_DUPLICATE,
                    f"another row without a lead id has {shown_person(person)}: both would "
                    "create a lead for one person; merge them into one row",
                )
            )
        found = check_payload(
            row.payload if creating else update_part(row.payload),
            require_names=config.require_names,
            statuses=config.statuses,
            office_ids=office_ids,
            operation=Operation.CREATE if creating else Operation.UPDATE,
        )
        said = {p.field for p in row.problems}
        for fname, items in found.items():
            for code, message in items:
                if code == Code.REQUIRED and fname in said:
                    continue  # its cell could not be read (an Excel error): said already
                row.problems.append(_problem(row, plan, fname, code, message))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _problem(row: MappedRow, plan: ColumnPlan, fname: str, code: str, message: str) -> Problem:
    index = plan.id_index if fname == "id" else row.sources.get(fname, plan.field_column(fname))
    return Problem(
        row=row.row,
        code=code,
        message=message,
        stage="validate",
        field=None if fname == "id" else fname,
        column=plan.headers[index] if index is not None else None,
        column_index=index,
    )


@dataclass(frozen=True)
class IdScan:
    """What one cheap pass over the id column tells before any row is sent."""

    rows: int
    duplicates: frozenset[str]
    people: frozenset[str] = frozenset()  # --create: person keys on more than one new row


def scan_ids(table: Table, plan: ColumnPlan, chunk_rows: int = CHUNK_ROWS) -> IdScan:
    """Count the rows and find lead ids that appear on more than one row.

    Runs before any row is sent (row 5 must not go out when row 900 repeats its id).
    It keeps only the id column's text, in pyarrow arrays (about 12 bytes a row).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import Cells

    index = plan.id_index
    if index is None:
        return IdScan(sum(len(c) for c in table.chunks(chunk_rows)), frozenset())
    if plan.report_row_index is not None:
        return _scan_report_ids(table, plan)
    arrays = []
    numbers: list[Any] | None = []  # while every id is a plain whole number: as int64
    # pyarrow parses the next block (outside the GIL) while this one is looked at
    for block in prefetch(table.column_text(index, chunk_rows)):
        cells = Cells(block)
        arrays.append(lead_id_texts(cells))
        if numbers is not None and bool(cells.whole_number.all()):
            numbers.append(pc.cast(cells.array, pa.int64()).to_numpy())
        else:
            numbers = None
    rows = sum(len(a) for a in arrays)
    if numbers:
        # digits without leading zeros: equal numbers are equal texts (a sort beats hashing)
        ids = np.sort(np.concatenate(numbers))
        repeated = np.unique(ids[1:][ids[1:] == ids[:-1]])
        return IdScan(rows, frozenset(str(i) for i in repeated.tolist()))
    counts = pc.value_counts(pa.chunked_array(arrays, pa.string()))
    values = counts.field("values")
    repeated_text = values.filter(
        pc.and_(pc.greater(counts.field("counts"), 1), pc.not_equal(values, ""))
    )
    return IdScan(rows, frozenset(repeated_text.to_pylist()))


def _scan_report_ids(table: Table, plan: ColumnPlan) -> IdScan:
    """:func:`scan_ids` for a leadsync report fed back in (small files, one pass): its
    repeated lines of one row count once."""
    assert plan.id_index is not None and plan.report_row_index is not None
    seen: set[str] = set()
    counts: Counter[str] = Counter()
    lines = zip(table.column(plan.report_row_index), table.column(plan.id_index), strict=True)
    for row_no, lead in lines:
        if row_no in seen:
            continue
        seen.add(row_no)
        text = lead_id_text(lead)
        if text:
            counts[text] += 1
    return IdScan(len(seen), frozenset(k for k, n in counts.items() if n > 1))


# -- the columnar fast path ---------------------------------------------------------

_LEAD_ID_RE2 = f"^{_LEAD_ID_PATTERN}$"  # the same rule, for pyarrow


def check_columns(
    rows: ColumnarRows,
    plan: ColumnPlan,
    config: Config,
    duplicates: Collection[str] = frozenset(),
    office_ids: Collection[int] | None = None,
) -> Any:
    """Which simple rows certainly pass every rule (numpy bool per row).

    A row this cannot clear is not judged here: it goes through :func:`validate_rows`,
    which says what is wrong (the fast path only ever says "valid").
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool

    ok = rows.simple & ~rows.blank
    if not ok.any():
        return ok
    if check_payload(
        dict(plan.defaults),
        require_names=False,
        statuses=config.statuses,
        office_ids=office_ids,
    ):
        return np.zeros_like(ok)  # a bad default: every row says so, row by row
    if rows.ids is None:
        return np.zeros_like(ok)
    ids = rows.ids
    text = ids.array
    ok &= ids.plain & ids.ascii
    digits = ids.data.size and bool(((ids.data - 0x30) < 10).all())  # uint8: wraps below "0"
    if not (digits and not ids.blank.any() and int(ids.nbytes.max()) <= 128):
        # ids of 1-128 digits pass all three: only other ids need the pattern checks
        ok &= to_numpy_bool(pc.match_substring_regex(text, _LEAD_ID_RE2))
        # ".." is refused, and 1001.0 means lead 1001: either way, row by row
        ok &= ~to_numpy_bool(pc.match_substring(text, "."))
        ok &= ~to_numpy_bool(pc.equal(pc.ascii_lower(text), EXAMPLE_ID.lower()))
    if duplicates:
        ok &= ~to_numpy_bool(pc.is_in(text, value_set=pa.array(sorted(duplicates), pa.string())))
    if config.require_names:
        for fname in REQUIRED_NAMES:
            if fname in plan.defaults:
                continue
            cells = rows.cells.get(fname)
            if cells is None:
                return np.zeros_like(ok)
            ok &= ~cells.blank
    for fname, cells in rows.cells.items():
        limit = FIELDS_BY_NAME[fname].max_chars  # set for text fields only
        if limit is not None and (cells.nbytes > limit).any():
            ok &= cells.chars() <= limit
    for fname, allowed in (("status", config.statuses), ("office_id", office_ids)):
        cells = rows.cells.get(fname)
        if allowed is None or cells is None:
            continue
        known = pa.array(sorted(str(a) for a in allowed), pa.string())
        ok &= cells.blank | to_numpy_bool(pc.is_in(cells.array, value_set=known))
    ok &= _within_size(rows.answers, "questionnaire", lambda key: [key, ""])
    ok &= _within_size(rows.meta, "meta", lambda key: {key: ""})
    return ok


def _within_size(parts: list[tuple[str, Any]], fname: str, shape: Any) -> Any:
    """Rows whose questionnaire/meta certainly fits its JSON size limit (an upper bound
    of PHP's encoding: a plain ASCII character takes at most 2 bytes, any other at most
    3 per UTF-8 byte)."""
    import numpy as np

    limit = FIELDS_BY_NAME[fname].max_json_bytes or 0
    if not parts:
        return True
    bound = np.full(len(parts[0][1]), 2, dtype=np.int64)
    for key, cells in parts:
        per_byte = np.where(cells.ascii, 2, 3)
        # the item with an empty value, plus the value's bound, plus a separator
        bound += np.where(cells.blank, 0, json_size(shape(key)) + per_byte * cells.nbytes + 1)
    return bound <= limit
