"""The pipeline's shared value types: every stage imports them, none redefines them.

- :class:`Outcome` — how a row ended (exactly one per input row), with its properties;
- :class:`Code` — the catalogue of stable problem codes, each with its stage and meaning;
- :class:`Problem`, :class:`MappedRow`, :class:`Target`, :class:`ColumnPlan`,
  :class:`CheckedChunk` — what flows from the mapper through the validator to the reports;
- :class:`SendResult`, :class:`Lookup`, :class:`LeadRead` — what the sender answers;
- the report files' own columns (:data:`FAILURE_COLUMNS`, :data:`SUCCESS_COLUMNS`).

Outcomes and codes are ``StrEnum`` members: they compare, hash and serialise as the plain
strings the reports, the journal and ``--json`` have always used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from leadsync.reader import Chunk

Stage = Literal["read", "map", "validate", "send"]


class Outcome(StrEnum):
    """How one input row ended (spec §6)."""

    VALID = "valid"  # validate / dry run only
    UPDATED = "updated"
    CREATED = "created"  # --create: a new lead, its id in the reports
    UNCHANGED = "unchanged"
    INVALID = "invalid"
    REJECTED = "rejected"  # a 4xx from the server
    FAILED = "failed"  # gave up after retries
    UNKNOWN = "unknown"  # ambiguous, not re-sent
    NOT_ATTEMPTED = "not_attempted"  # the run stopped first
    SKIPPED_BLANK = "skipped_blank"
    # leadsync revert: one outcome per field of a lead the reverted run changed
    REVERTED = "reverted"  # put back to its value before the run
    CONFLICT = "conflict"  # changed by someone since the run: left alone
    NOT_REVERTIBLE = "not_revertible"  # an appended answer, a field blank before, ...

    @property
    def is_failure(self) -> bool:
        """The row needs attention: it goes to failures.csv and makes the exit code 1."""
        return self in _FAILURES

    @property
    def was_sent(self) -> bool:
        """A request went out for the row (counted by --max-failure-rate)."""
        return self in _SENT

    @property
    def retryable(self) -> bool:
        """``--retry-failed`` sends the row again."""
        return self in _RETRYABLE

    @property
    def colour(self) -> str | None:
        """The fill of the row's outcome cell in report.xlsx (None: no fill)."""
        if self in (
            Outcome.VALID,
            Outcome.UPDATED,
            Outcome.CREATED,
            Outcome.UNCHANGED,
            Outcome.REVERTED,
        ):
            return GREEN
        if self in (Outcome.INVALID, Outcome.REJECTED):
            return RED
        return None if self is Outcome.SKIPPED_BLANK else AMBER


RED, AMBER, GREEN = "FFC7CE", "FFEB9C", "C6EFCE"  # report.xlsx fills
_FAILURES = frozenset(
    {
        Outcome.INVALID,
        Outcome.REJECTED,
        Outcome.FAILED,
        Outcome.UNKNOWN,
        Outcome.NOT_ATTEMPTED,
        Outcome.CONFLICT,
        Outcome.NOT_REVERTIBLE,
    }
)
_SENT = frozenset(
    {Outcome.UPDATED, Outcome.CREATED, Outcome.REJECTED, Outcome.FAILED, Outcome.UNKNOWN}
)
_RETRYABLE = frozenset({Outcome.FAILED, Outcome.UNKNOWN, Outcome.NOT_ATTEMPTED})

OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)
FAILURE_OUTCOMES: frozenset[Outcome] = _FAILURES


class Code(StrEnum):
    """Every stable problem code leadsync reports, in one catalogue.

    The stage that raises each one and what it means are in :data:`CODE_INFO`; the
    server's own refusals are ``http_<status>`` (:func:`http_code`).
    """

    # reading and mapping a cell
    EXCEL_ERROR = "excel_error"
    EXTRA_CELLS = "extra_cells"
    NOT_A_NUMBER = "not_a_number"
    NOT_WHOLE_NUMBER = "not_whole_number"
    INVALID_BOOLEAN = "invalid_boolean"
    INVALID_DATE = "invalid_date"
    INVALID_JSON = "invalid_json"
    # the lead id
    ID_MISSING = "id_missing"
    ID_INVALID = "id_invalid"
    ID_EXAMPLE = "id_example"
    ID_DUPLICATE = "id_duplicate"
    # the API's rules
    UNKNOWN_FIELD = "unknown_field"
    NULL = "null"
    WRONG_TYPE = "wrong_type"
    BLANK = "blank"
    REQUIRED = "required"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TOO_LARGE = "too_large"
    CONTROL_CHARACTER = "control_character"
    STATUS_NOT_ALLOWED = "status_not_allowed"
    INVALID_OFFICE_ID = "invalid_office_id"
    UNKNOWN_OFFICE = "unknown_office"
    QUESTIONNAIRE_ITEM = "questionnaire_item"
    META_VALUE = "meta_value"
    # the create rules
    NOT_ALLOWED = "not_allowed"
    INVALID_EMAIL = "invalid_email"
    INVALID_PHONE = "invalid_phone"
    INVALID_URL = "invalid_url"
    NOT_FOR_TYPE = "not_for_type"
    PERSON_DUPLICATE = "person_duplicate"
    # sending
    NO_SINGLE_MATCH = "no_single_match"
    FOUND_CREATED = "found_created"
    NO_ID_IN_ANSWER = "no_id_in_answer"
    AMBIGUOUS_CREATE = "ambiguous_create"
    LOOKUP_FAILED = "lookup_failed"
    UNCHANGED = "unchanged"
    CONFIRMED = "confirmed"
    AMBIGUOUS = "ambiguous"
    AMBIGUOUS_EARLIER = "ambiguous_earlier"
    GAVE_UP = "gave_up"
    AUTH = "auth"
    REDIRECT = "redirect"
    STOPPED = "stopped"
    STOPPED_IN_FLIGHT = "stopped_in_flight"
    # reverting
    CHANGED_SINCE = "changed_since"
    APPENDED = "appended"
    BLANK_BEFORE = "blank_before"
    BEFORE_UNKNOWN = "before_unknown"
    CREATED_BY_RUN = "created_by_run"
    LEAD_GONE = "lead_gone"
    NOT_ATTEMPTED = "not_attempted"
    INTERNAL = "internal"

    @property
    def stage(self) -> Stage:
        """The pipeline stage that raises this code."""
        return CODE_INFO[self][0]

    @property
    def meaning(self) -> str:
        """What the code means, for the README and for people reading a report."""
        return CODE_INFO[self][1]


CODE_INFO: Mapping[Code, tuple[Stage, str]] = {
    Code.EXCEL_ERROR: ("read", "the cell is an Excel error (#N/A, #REF!, ...), never blank"),
    Code.EXTRA_CELLS: ("read", "the row has more cells than the header has columns"),
    Code.NOT_A_NUMBER: ("map", "a number field holds something that is not a number"),
    Code.NOT_WHOLE_NUMBER: ("map", "a whole-number field holds a fraction (1213.5)"),
    Code.INVALID_BOOLEAN: ("map", "not yes/no, y/n, true/false, 1/0 or a tick"),
    Code.INVALID_DATE: ("map", "not a date leadsync can read, or not a real date"),
    Code.INVALID_JSON: ("map", "a questionnaire or meta cell is not the JSON it must be"),
    Code.ID_MISSING: ("validate", "the row has no lead id (and no --match-by value)"),
    Code.ID_INVALID: ("validate", "the lead id cannot be used in /leads/<id>"),
    Code.ID_EXAMPLE: ("validate", "the template's example row was left in"),
    Code.ID_DUPLICATE: ("validate", "one lead on two rows: its answers would go twice"),
    Code.UNKNOWN_FIELD: ("validate", "not a field of the Lead API"),
    Code.NULL: ("validate", "a null value: leave the cell blank instead"),
    Code.WRONG_TYPE: ("validate", "the value is not of the field's type"),
    Code.BLANK: ("validate", "only spaces where text is needed"),
    Code.REQUIRED: (
        "validate",
        "first_name and last_name are required on every update; type too on a create",
    ),
    Code.TOO_SHORT: ("validate", "shorter than the field's minimum"),
    Code.TOO_LONG: ("validate", "longer than the field's maximum"),
    Code.TOO_LARGE: ("validate", "questionnaire or meta over its JSON byte limit"),
    Code.CONTROL_CHARACTER: ("validate", "a control character the API would refuse"),
    Code.STATUS_NOT_ALLOWED: ("validate", "a status the mapping file's list does not allow"),
    Code.INVALID_OFFICE_ID: ("validate", "office_id is not a positive whole number"),
    Code.UNKNOWN_OFFICE: ("validate", "not an office of this account (--check-offices)"),
    Code.QUESTIONNAIRE_ITEM: ("validate", "a questionnaire item is not two strings"),
    Code.META_VALUE: ("validate", "a meta value is not text"),
    Code.NOT_ALLOWED: ("validate", "type or source is not one of the values the API takes"),
    Code.INVALID_EMAIL: ("validate", "not an email address (name@example.com)"),
    Code.INVALID_PHONE: ("validate", "not a phone number (7-15 digits; + ( ) - . spaces)"),
    Code.INVALID_URL: ("validate", "not a web address starting http:// or https://"),
    Code.NOT_FOR_TYPE: ("validate", "a field this type of lead needs, or must not have"),
    Code.PERSON_DUPLICATE: (
        "validate",
        "--create: two rows would create a lead for the same person: keep one row",
    ),
    Code.NO_SINGLE_MATCH: ("send", "--match-by found no lead (without --create), or several"),
    Code.FOUND_CREATED: (
        "send",
        "a create whose answer was lost, and looking the person up found the new lead",
    ),
    Code.NO_ID_IN_ANSWER: (
        "send",
        "the create was accepted but its answer carried no lead id, and no lookup found it",
    ),
    Code.AMBIGUOUS_CREATE: (
        "send",
        "the lead may have been created and looking the person up could not tell: not "
        "posted again (a second lead would be a duplicate)",
    ),
    Code.LOOKUP_FAILED: ("send", "--match-by could not ask the API (worth a retry)"),
    Code.UNCHANGED: ("send", "every field already confirmed by an earlier run"),
    Code.CONFIRMED: ("send", "an ambiguous answer, and reading the lead showed it applied"),
    Code.AMBIGUOUS: ("send", "the update may have been applied; not re-sent"),
    Code.AMBIGUOUS_EARLIER: ("send", "an earlier run's ambiguous answers could not be settled"),
    Code.GAVE_UP: ("send", "every attempt failed (429, 503, connection)"),
    Code.AUTH: ("send", "the API refused the key: the run stops"),
    Code.REDIRECT: ("send", "the API answered with a redirect: check the base URL"),
    Code.STOPPED: ("send", "the run stopped before or while the row was sent"),
    Code.STOPPED_IN_FLIGHT: (
        "send",
        "the run stopped with this row's request unanswered after the grace period: it "
        "may have been applied; the next run reads the lead back before sending again",
    ),
    Code.NOT_ATTEMPTED: ("send", "the run stopped before this row"),
    Code.CHANGED_SINCE: (
        "send",
        "revert: the field no longer holds what the run set (someone changed it): left alone",
    ),
    Code.APPENDED: ("send", "revert: questionnaire answers cannot be removed through the API"),
    Code.BLANK_BEFORE: ("send", "revert: the field was blank before, and the API cannot clear it"),
    Code.BEFORE_UNKNOWN: (
        "send",
        "revert: the field's value before the run was not recorded (sync with --snapshot)",
    ),
    Code.CREATED_BY_RUN: ("send", "revert: the run created this lead; a revert does not delete"),
    Code.LEAD_GONE: ("send", "revert: the lead no longer exists (HTTP 404)"),
    Code.INTERNAL: ("send", "a bug in leadsync; the row is reported, not lost"),
}


def http_code(status: int) -> str:
    """The code of a row the server refused: ``http_422`` and so on."""
    return f"http_{status}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row: where, a stable code, and what to do about it."""

    row: int
    code: str  # a Code, or http_<status>
    message: str
    field: str | None = None
    column: str | None = None  # the header as written in the file
    column_index: int | None = None  # 0-based position among the headers
    stage: Stage = "map"


@dataclass(frozen=True)
class Target:
    """What one column feeds: the id, a field, a question, a meta key, a full name (split
    into first_name and last_name), or nothing."""

    kind: Literal["id", "field", "question", "meta", "ignore", "match", "name"]
    name: str = ""

    @property
    def field(self) -> str:
        """The API field this column feeds: its own, questionnaire for a question,
        meta for a meta key ("" for the id and unsent columns)."""
        return {"field": self.name, "question": "questionnaire", "meta": "meta"}.get(self.kind, "")


@dataclass(frozen=True)
class ColumnPlan:
    """How the columns of one file map onto the API (built once per file)."""

    headers: tuple[str, ...]
    targets: tuple[Target | None, ...]  # None: unmapped
    id_index: int | None
    unmapped: tuple[str, ...]
    defaults: Mapping[str, Any]
    # set when the input is a leadsync report (failures.csv fed back in): the column
    # holding each line's original row number, so a row with two problems is read once
    report_row_index: int | None = None
    match_index: int | None = None  # --match-by: the email/phone column

    def field_column(self, fname: str) -> int | None:
        """The column that feeds ``fname`` (a field, or questionnaire/meta columns)."""
        for i, t in enumerate(self.targets):
            if t is None:
                continue
            if t.kind == "field" and t.name == fname:
                return i
        for i, t in enumerate(self.targets):  # else the first question or meta column
            if t is not None and t.kind in ("question", "meta") and t.field == fname:
                return i
        return None


@dataclass
class MappedRow:
    """One row after mapping: the payload it would send and what stopped it, if anything."""

    row: int
    lead_id: str | None
    payload: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    blank: bool = False
    sources: dict[str, int] = field(default_factory=dict)  # field -> column index
    match: str | None = None  # --match-by: the email or phone to find the lead by


@dataclass
class CheckedChunk:
    """A chunk after the fast path: what it cleared, and the rows checked one by one."""

    chunk: Chunk
    columns: Any  # the mapper's ColumnarRows
    lead_ids: Any  # pyarrow string array: each row's lead id as text
    # pyarrow dictionary array: fields_sent as a CSV field (where cleared); a file's rows
    # share a few patterns, decoded where the lines are written (off the checking thread)
    fields: Any
    slow: list[tuple[int, MappedRow]]  # (position, row) checked by the reference path


@dataclass
class SendResult:
    """How one row's update ended."""

    outcome: Outcome
    http_status: int | None = None
    code: str = ""  # a Code, or http_<status>
    message: str = ""
    attempts: int = 0
    field_errors: dict[str, list[str]] = field(default_factory=dict)
    abort: str | None = None  # set when the whole run must stop (auth)
    lead_id: str | None = None  # a create: the new lead's id (None: not known)


class Lookup(NamedTuple):
    """What a --match-by lookup found: the lead, or why not (``failed``: the API could
    not be asked, not that no single lead matched)."""

    lead: str | None
    why: str
    failed: bool
    matches: int = 0  # how many leads the lookup found


class LeadRead(NamedTuple):
    """What reading a lead gave: its HTTP status (None: no answer, see ``failure``) and
    the lead, when one came back."""

    status: int | None
    lead: dict[str, Any] | None
    failure: str  # why there was no answer ("ConnectionError", "HTTP 503", ...)


# The reports' own leading columns; a file that starts with them is a leadsync report
# fed back in (failures.csv as the input of a retry).
FAILURE_COLUMNS = ("row", "lead_id", "outcome", "stage", "field", "code", "message", "http_status")
SUCCESS_COLUMNS = ("row", "lead_id", "outcome", "http_status", "fields_sent")


def report_prefix(headers: tuple[str, ...]) -> int:
    """How many leading columns are leadsync's own, if ``headers`` are a report's."""
    for prefix in (FAILURE_COLUMNS, SUCCESS_COLUMNS):
        if headers[: len(prefix)] == prefix:
            return len(prefix)
    return 0
