"""Validator stage: the rules of the Lead API's docs (spec §1), applied to each row.

The rules themselves are :mod:`leadsync.rules` (one rule book, shared with the sandbox);
this stage applies them to rows — by the update or the create rules — with the file-level
ones (a lead on two rows, a person created twice) and the columnar fast path. Every
problem is a value (row, column, field, stable code, message) collected on the row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import astuple, dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from leadsync.config import Config
from leadsync.defaults import CHUNK_ROWS
from leadsync.fields import (
    CREATE_REQUIRED,
    FIELDS_BY_NAME,
    REQUIRED_NAMES,
    TYPE_NEEDS,
    TYPE_REFUSES,
    Operation,
    json_size,
    update_part,
)
from leadsync.mapper import ColumnarRows, lead_id_missing, lead_id_text, lead_id_texts
from leadsync.model import Code, ColumnPlan, MappedRow, Problem
from leadsync.reader import Table
from leadsync.rules import (
    EXAMPLE_ID,
    LEAD_ID_PATTERN,
    check_lead_id,
    check_payload,
)
from leadsync.threads import prefetch

if TYPE_CHECKING:
    import pyarrow as pa


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
    index = plan.id_index
    if index is None:
        return IdScan(sum(len(c) for c in table.chunks(chunk_rows)), frozenset())
    if plan.report_row_index is not None:
        return _scan_report_ids(table, plan)
    tally = IdTally()
    # pyarrow parses the next block (outside the GIL) while this one is looked at
    for block in prefetch(table.column_text(index, chunk_rows)):
        tally.add(block)
    return tally.scan()


class IdTally:
    """:func:`scan_ids` block by block: the id column's blocks counted as they come
    (a workbook parsed in pieces is checked while the rest is parsed); :meth:`scan`
    says what the blocks so far repeat."""

    def __init__(self) -> None:
        self.rows = 0
        self._numbers: list[Any] = []  # the ids that are plain whole numbers, as int64
        self._others: list[Any] = []  # the rest, as the texts they are read as

    def add(self, block: pa.Array) -> pa.Array:
        """Count one block of the id column's texts; return its ids as read."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from leadsync.columnar import Cells

        cells = Cells(block)
        self.rows += len(cells)
        texts = lead_id_texts(cells)
        if texts is not cells.array:  # " 1001 " and 1001.0 are lead 1001: as read
            cells = Cells(texts)
        whole = cells.whole_number
        if bool(whole.all()):
            self._numbers.append(pc.cast(texts, pa.int64()))
            return texts
        if whole.any():
            self._numbers.append(pc.cast(texts.filter(pa.array(whole)), pa.int64()))
            self._others.append(texts.filter(pa.array(~whole)))
        else:
            self._others.append(texts)
        return texts

    def scan(self) -> IdScan:
        """The rows counted and the ids repeated among them."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        # digits without leading zeros: equal numbers are equal texts, and no other text
        # is one of them (a sort beats hashing: 0.04 s for 1M ids, value_counts 0.15 s);
        # the ids are kept in pyarrow's memory until then
        repeated: set[str] = set()
        if self._numbers:
            ids = np.sort(pa.concat_arrays(self._numbers).to_numpy())
            repeated.update(str(i) for i in np.unique(ids[1:][ids[1:] == ids[:-1]]).tolist())
        if self._others:
            counts = pc.value_counts(pa.chunked_array(self._others, pa.string()))
            values = counts.field("values")
            twice = pc.and_(pc.greater(counts.field("counts"), 1), pc.not_equal(values, ""))
            repeated.update(values.filter(twice).to_pylist())
        return IdScan(self.rows, frozenset(repeated))


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

_LEAD_ID_RE2 = f"^{LEAD_ID_PATTERN}$"  # the same rule, for pyarrow


def check_columns(
    rows: ColumnarRows,
    plan: ColumnPlan,
    config: Config,
    duplicates: Collection[str] = frozenset(),
    office_ids: Collection[int] | None = None,
    people: Collection[str] = frozenset(),
    faults: dict[str, Any] | None = None,
) -> Any:
    """Which simple rows certainly pass every rule (numpy bool per row); ``people``: the
    person keys more than one new row has (``--create``); ``faults``: the
    :func:`field_faults` of ``rows``, when already worked out.

    A row this cannot clear is not judged here: it goes through :func:`validate_rows`,
    which says what is wrong (the fast path only ever says "valid").
    """
    import numpy as np

    ok = rows.simple & ~rows.blank
    if not ok.any():
        return ok
    check = partial(check_payload, statuses=config.statuses, office_ids=office_ids)
    if check(update_part(plan.defaults), whole=False) or (
        config.create and check(plan.defaults, operation=Operation.CREATE, whole=False)
    ):
        return np.zeros_like(ok)  # a bad default: every row says so, row by row
    ids = rows.ids
    no_id = np.ones_like(ok)
    if ids is not None and (config.create or config.match_by is not None):
        no_id = lead_id_missing(ids)
    found = _good_ids(ids, duplicates) if ids is not None else np.zeros_like(ok)
    if config.match_by is not None and rows.match is not None:
        # no id, but an email or phone: the lead is looked up when the row is sent
        found |= no_id & ~rows.match.blank
    creating = no_id & config.create  # a new lead: its own rules, below
    ok &= found | creating
    if config.require_names:
        for fname in REQUIRED_NAMES:
            if fname not in plan.defaults:
                ok &= creating | _present(rows, plan, fname)
    if creating.any():
        ok &= ~creating | _creatable(rows, plan, people)
    for bad in (field_faults(rows, config, office_ids) if faults is None else faults).values():
        ok &= ~bad
    return ok


def field_faults(
    rows: ColumnarRows, config: Config, office_ids: Collection[int] | None = None
) -> dict[str, Any]:
    """Field -> the rows whose value there a field's own rule may refuse (numpy bool per
    row): a text over its length, a status or office not allowed, a questionnaire or meta
    over its size. The other rows certainly pass those rules."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool

    faults: dict[str, Any] = {}

    def refuse(fname: str, ok: Any) -> None:
        if ok is not True and not ok.all():
            faults[fname] = faults[fname] | ~ok if fname in faults else ~ok

    for fname, cells in rows.cells.items():
        limit = FIELDS_BY_NAME[fname].max_chars  # set for text fields only
        if limit is not None and (cells.nbytes > limit).any():
            refuse(fname, cells.chars() <= limit)
    for fname, allowed in (("status", config.statuses), ("office_id", office_ids)):
        cells = rows.cells.get(fname)
        if allowed is None or cells is None:
            continue
        known = pa.array(sorted(str(a) for a in allowed), pa.string())
        refuse(fname, cells.blank | to_numpy_bool(pc.is_in(cells.array, value_set=known)))
    refuse("questionnaire", _within_size(rows.answers, "questionnaire", lambda key: [key, ""]))
    refuse("meta", _within_size(rows.meta, "meta", lambda key: {key: ""}))
    return faults


def names_missing_only(
    rows: ColumnarRows,
    plan: ColumnPlan,
    config: Config,
    cleared: Any,
    duplicates: Collection[str] = frozenset(),
    office_ids: Collection[int] | None = None,
    faults: dict[str, Any] | None = None,
) -> Any:
    """Of the rows :func:`check_columns` did not clear, those that break no rule but an
    update's required names (numpy bool per row): a file without a last-name column, a
    row whose first name is blank. Each sends what the columnar path says it would, and
    :func:`name_problems` gives their problems: no row of them goes row by row."""
    import numpy as np

    pending = rows.simple & ~(cleared | rows.blank)
    if not config.require_names or config.create:
        return np.zeros_like(pending)
    # only rows without a name: a file whose names are all there is checked once
    pending &= np.logical_or.reduce(list(names_absent(rows, plan).values()))
    if not pending.any():
        return pending
    relaxed = replace(config, require_names=False)
    return pending & check_columns(rows, plan, relaxed, duplicates, office_ids, faults=faults)


def name_problems(plan: ColumnPlan) -> Callable[[MappedRow, Collection[str]], None]:
    """What adds the required-name problems to a row that lacks the names given, worded
    by the rule book (:func:`~leadsync.rules.check_payload` of an empty payload) and
    placed as :func:`validate_rows` places them (worked out once, for many rows)."""
    probe = MappedRow(row=0, lead_id=None, payload={})
    required = [
        (fname, astuple(_problem(probe, plan, fname, code, message))[1:])
        for fname, items in check_payload({}, require_names=True).items()
        for code, message in items
    ]

    def add(row: MappedRow, absent: Collection[str]) -> None:
        for fname, problem in required:
            if fname in absent:
                row.problems.append(Problem(row.row, *problem))  # 2x as fast as replace()

    return add


def names_absent(rows: ColumnarRows, plan: ColumnPlan) -> dict[str, Any]:
    """Each required name -> the rows whose payload lacks it (numpy bool per row)."""
    return {fname: ~_present(rows, plan, fname) for fname in REQUIRED_NAMES}


def _present(rows: ColumnarRows, plan: ColumnPlan, fname: str) -> Any:
    """The rows whose payload has ``fname`` (a cell of its own, or a default)."""
    import numpy as np

    cells = rows.cells.get(fname)
    if fname in plan.defaults:
        return np.ones(len(rows.simple), dtype=bool)
    return ~cells.blank if cells is not None else np.zeros(len(rows.simple), dtype=bool)


def _creatable(rows: ColumnarRows, plan: ColumnPlan, people: Collection[str]) -> Any:
    """The rows a create's own rules let through (:func:`~leadsync.rules.check_payload`'s
    whole-payload part for a ``POST``): a type and both names, what the type needs and
    not what it refuses, and a person no other row would create too."""
    import numpy as np

    from leadsync.creating import payload_texts, person_keys

    ok = np.logical_and.reduce([_present(rows, plan, f) for f in CREATE_REQUIRED])
    if rows.create_ok is not None:
        ok &= rows.create_ok
    kinds = payload_texts(rows, plan, ("type",))[0]
    for kind in set(kinds) & (set(TYPE_NEEDS) | set(TYPE_REFUSES)):
        this = np.array([k == kind for k in kinds], dtype=bool)
        for fname in TYPE_NEEDS.get(kind, ()):
            ok &= ~this | _present(rows, plan, fname)
        for fname in TYPE_REFUSES.get(kind, ()):
            ok &= ~this | ~_present(rows, plan, fname)
    if people:
        where = np.flatnonzero(ok)
        twice = np.array([k in people for k in person_keys(rows, plan, where)], dtype=bool)
        ok[where[twice]] = False
    return ok


def _good_ids(ids: Any, duplicates: Collection[str]) -> Any:
    """The rows whose lead id certainly passes :func:`check_lead_id` and is on no other
    row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool

    text = ids.array
    ok = ids.plain & ids.ascii
    digits = ids.data.size and bool(((ids.data - 0x30) < 10).all())  # uint8: wraps below "0"
    if not (digits and not ids.blank.any() and int(ids.nbytes.max()) <= 128):
        # ids of 1-128 digits pass all three: only other ids need the pattern checks
        ok &= to_numpy_bool(pc.match_substring_regex(text, _LEAD_ID_RE2))
        # ".." is refused, and 1001.0 means lead 1001: either way, row by row
        ok &= ~to_numpy_bool(pc.match_substring(text, "."))
        ok &= ~to_numpy_bool(pc.equal(pc.ascii_lower(text), EXAMPLE_ID.lower()))
    if duplicates:
        ok &= ~to_numpy_bool(pc.is_in(text, value_set=pa.array(sorted(duplicates), pa.string())))
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
