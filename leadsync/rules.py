"""The rule book: the Lead API's rules (spec §1, §4b) for one payload and one lead id.

:func:`check_payload` is the one implementation of the rules, shared by the validator
(row by row, and once per distinct value for the columnar path), the sandbox server (so
the client and the simulator can never disagree about what the API accepts) and the
sender. It depends on the field catalogue only, never on a reader or a mapper.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from leadsync.columnar import PY_SPACE
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
)
from leadsync.model import Code
from leadsync.reader import excel_error

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# A lead id goes into the URL path. The API's ids are numbers in every example (they come
# from the create endpoint's answer); other accounts' may be tokens. So: 1-128 characters,
# ASCII letters, digits and - _ . ~ : (what a path segment carries as it is), starting
# with a letter or digit, without "..": nothing that could walk the path (`/`, `..`),
# start a query or fragment, or hide in whitespace.
LEAD_ID_RULE = "1-128 letters, digits and - _ . ~ :, starting with a letter or digit"
LEAD_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:~-]{0,127}"
_LEAD_ID_RE = re.compile(LEAD_ID_PATTERN)
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
# Each is one pattern read by two engines: Python's re for a cell, pyarrow's RE2 for a
# column. {s} stands for whitespace, written for each (re's \s is str.isspace(); RE2's is
# ASCII only: PY_SPACE is str.isspace() in RE2); the tests hold the two to one verdict.
_FORM_PATTERNS = {
    "email": r"[^@{s}]+@[^@{s}.]+(?:\.[^@{s}.]+)+",
    "phone": r"\+?[0-9 ()./-]+",
    "url": r"(?i)https?://[^{s}/?#]+\.[^{s}/?#]+(?:[/?#][^{s}]*)?",
}
_FORM_RE = {form: re.compile(p.format(s=r"\s")) for form, p in _FORM_PATTERNS.items()}
FORM_RE2 = {form: f"^(?:{p.format(s=PY_SPACE[1:-1])})$" for form, p in _FORM_PATTERNS.items()}
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
    if _FORM_RE[form].fullmatch(text) is None:
        return False
    # the pattern lets only ASCII digits through: isdigit() counts those
    return form != "phone" or PHONE_DIGITS[0] <= sum(ch.isdigit() for ch in text) <= PHONE_DIGITS[1]


def forms_ok(texts: pa.Array, form: str) -> np.ndarray:
    """:func:`_has_form` of every cell of a string array, at once (RE2)."""
    import pyarrow.compute as pc

    from leadsync.columnar import TRIM_RE, to_numpy_bool

    text = pc.replace_substring_regex(texts, TRIM_RE, "")  # str.strip()
    ok = to_numpy_bool(pc.match_substring_regex(text, FORM_RE2[form]))
    if form == "phone":
        digits = pc.count_substring_regex(text, "[0-9]").to_numpy(zero_copy_only=False)
        ok &= (digits >= PHONE_DIGITS[0]) & (digits <= PHONE_DIGITS[1])
    return ok


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
    whole: bool = True,
) -> FieldProblems:
    """Check a JSON payload against the API's rules for ``operation`` (an update's
    ``PATCH``, or a create's ``POST``); return the problems per field. ``whole=False``
    checks each field's own rules only, not what the payload as a whole needs (the names,
    a create's type and what it needs): one cell judged on its own."""
    problems: FieldProblems = {}

    def add(fname: str, code: Code, message: str) -> None:
        problems.setdefault(fname, []).append((code, message))

    creating = operation is Operation.CREATE
    rules = (statuses, office_ids, creating)
    for fname, value in payload.items():
        found = _remembered_verdict(fname, value, rules)
        if found:
            problems.setdefault(fname, []).extend(found)
    if not whole:
        return problems
    if creating:
        _check_create(payload, add)
    elif require_names:
        for fname in REQUIRED_NAMES:
            if fname not in payload:
                add(fname, Code.REQUIRED, f"{fname} is required: fill it in on every row")
    return problems


# A field's verdict on a value, remembered: an invalid row's values are mostly values
# other rows had (a status, an answer, a questionnaire of them). Keyed by the value's
# frozen form, so True and 1, 1 and 1.0, "1" and 1 stay apart.
_VERDICTS: dict[tuple[Any, ...], tuple[tuple[Code, str], ...]] = {}
_VERDICTS_MAX = 1 << 16


def _remembered_verdict(
    fname: str,
    value: Any,
    rules: tuple[Collection[str] | None, Collection[int] | None, bool],
) -> tuple[tuple[Code, str], ...]:
    """:func:`_field_verdict` of ``value`` under ``rules`` (statuses, office ids,
    creating), from memory when it was judged before."""
    kind = value.__class__
    frozen = _frozen(value) if kind is list or kind is dict else value
    try:
        key = (fname, kind, frozen, rules)
        found = _VERDICTS.get(key)
    except TypeError:  # a set of office ids, an odd value: judged each time
        return _field_verdict(fname, value, *rules)
    if found is None:
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()  # bounded memory on a file of ever-new values
        found = _VERDICTS[key] = _field_verdict(fname, value, *rules)
    return found


def _frozen(value: Any) -> Any:
    """``value`` as a hashable key that tells its type (JSON values: lists, dicts,
    texts, numbers, flags, None)."""
    kind = value.__class__
    if kind is list:
        return (list, tuple(_frozen(v) for v in value))
    if kind is dict:
        return (dict, tuple((k, _frozen(v)) for k, v in value.items()))
    return (kind, value)


def _field_verdict(
    fname: str,
    value: Any,
    statuses: Collection[str] | None,
    office_ids: Collection[int] | None,
    creating: bool,
) -> tuple[tuple[Code, str], ...]:
    """The problems of one field's value by its own rules (an invalid row's fields are
    mostly values other rows had: each verdict is remembered)."""
    found: list[tuple[Code, str]] = []

    def add(_: str, code: Code, message: str) -> None:
        found.append((code, message))

    spec = FIELDS_BY_NAME.get(fname)
    if spec is None:
        add(fname, Code.UNKNOWN_FIELD, f"{fname} is not a field of the Lead API")
        return tuple(found)
    if not (spec.create if creating else spec.update):
        add(
            fname,
            Code.UNKNOWN_FIELD,
            f"{fname} is sent only when a lead is created (--create), not on an update",
        )
        return tuple(found)
    if value is None:
        add(fname, Code.NULL, f"{fname} must not be null: leave the cell blank instead")
        return tuple(found)
    kind = spec.kind
    if kind is Kind.STRING:
        if not isinstance(value, str):
            add(fname, Code.WRONG_TYPE, f"{fname} must be text")
            return tuple(found)
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
    return tuple(found)


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
