"""The columnar mapper: the same mapping as :func:`~leadsync.mapper.rows.map_chunk`, a
column at a time, for the rows whose every cell is plain."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from leadsync.config import Config
from leadsync.fields import (
    FIELD_NAMES,
    FIELDS_BY_NAME,
    Field,
    Kind,
    Operation,
)
from leadsync.mapper.convert import (
    BLANK,
    FALSE_WORDS,
    TRUE_WORDS,
    Bad,
    convert_value,
    value_map_key,
)
from leadsync.mapper.dates import DATE_OK, parse_dates
from leadsync.model import ColumnPlan
from leadsync.reader import EXCEL_ERRORS, Chunk, cell_text
from leadsync.rules import check_payload, forms_ok

# -- the columnar fast path ---------------------------------------------------------
#
# The same mapping as map_chunk, done a column at a time for the rows whose every cell
# is plain (see leadsync.columnar). A row it cannot vouch for is not "simple" and goes
# through map_chunk; the tests hold the two paths to identical verdicts and payloads.

_TRUE_ASCII = sorted(t for t in TRUE_WORDS if t.isascii())
_FALSE_ASCII = sorted(f for f in FALSE_WORDS if f.isascii())


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
    match: Any = None  # --match-by: each row's email or phone as cell_text reads it
    # --create: the rows whose create-only cells (type, email ...) pass a create's rules
    # (an update does not send them: they count only for a row that creates a lead)
    create_ok: Any = None
    # numpy bool per row: nothing but its own cells keeps the row from the columnar path
    # (not a cell beyond the header, an id alone, an unreadable --match-by cell ...)
    row_ok: Any = None
    # column -> the rows whose cell there the columnar path does not vouch for
    faults: dict[int, Any] = field(default_factory=dict)


def fast_path_applies(plan: ColumnPlan, config: Config) -> bool:
    """Whether the columnar path can map this file (else every row goes row by row)."""
    return (
        plan.report_row_index is None
        and "questionnaire" not in plan.defaults
        and "meta" not in plan.defaults
    )


Judgments = dict[tuple[str, str], "str | None"]  # (field, cell text) -> JSON, or None


def map_columns(
    chunk: Chunk, plan: ColumnPlan, config: Config, judged: Judgments | None = None
) -> ColumnarRows:
    """Map ``chunk`` column by column; rows it cannot vouch for come back not simple.
    ``judged``: the distinct texts already judged in this file's earlier chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import Cells, trimmed

    n = len(chunk)
    simple = np.ones(n, dtype=bool)
    blank = np.ones(n, dtype=bool)
    literals: dict[str, Callable[[], Any]] = {}
    by_field: dict[str, Any] = {}
    answers: list[tuple[str, Any]] = []
    meta: list[tuple[str, Any]] = []
    names: list[Any] = []  # full-name columns
    # how many columns feed each field (a questionnaire: its JSON column and its question
    # columns)
    sources = Counter(t.field for t in plan.targets if t is not None and t.kind != "ignore")
    ids = chunk.number_cells(plan.id_index) if plan.id_index is not None else None
    match, unreadable = None, np.zeros(n, dtype=bool)
    create_ok = np.ones(n, dtype=bool)
    faults: dict[int, Any] = {}  # column -> the rows whose cell there is not vouched for

    def vouch(j: int, ok: Any) -> None:
        faults[j] = faults[j] | ~ok if j in faults else ~ok

    for j, target in enumerate(plan.targets):
        if target is None or target.kind in ("ignore", "id"):
            continue
        if target.kind == "match":  # the --match-by value: not sent, not a row's data
            # ... but an Excel error there is a problem even on a row with nothing else
            unreadable = _maybe_excel_error(chunk.cells(j))
            match = Cells(trimmed(chunk.display_cells(j)))  # cell_text of each cell
            if config.create:  # ... and sent as a new lead's contact detail
                blank &= match.blank
                if sources[target.name]:  # a column of that field too: row by row
                    simple &= match.blank
                    continue
                form = FIELDS_BY_NAME[target.name].form
                assert form is not None  # email or phone
                by_field[target.name] = match
                literals[target.name] = match.json_string
                simple &= match.blank | match.plain
                create_ok &= match.blank | forms_ok(match.array, form)
            continue
        cells = chunk.cells(j)
        if not (cells.blank | cells.plain).all():
            # spaces round a value (" Lee ", a cell of spaces) are trimmed as the
            # conversion trims them: such a cell is its trimmed text, and a cell of
            # spaces is blank (what is still not plain goes row by row)
            cells = Cells(trimmed(cells))
        blank &= cells.blank
        vouch(j, ~_maybe_excel_error(cells))
        if target.kind == "name":
            vouch(j, cells.blank | cells.plain)
            names.append(cells)  # split once every column of its own is in
            continue
        name = target.field
        table = config.values.get(name) if target.kind != "meta" else None
        if table and "" in table:
            simple &= cells.blank  # a map that fills blank cells: row by row
            continue
        mapped = _mapped_texts(chunk, j, table) if table else None
        if mapped is not None:
            cells = _put_in(cells, mapped)
            vouch(j, ~(cells.blank & mapped[0]))  # a value mapped to nothing
        if target.kind == "question":
            vouch(j, cells.blank | cells.plain)
            answers.append((target.name, cells))
            continue
        if target.kind == "meta":
            vouch(j, cells.blank | cells.plain)
            meta.append((target.name, cells))
            continue
        spec = FIELDS_BY_NAME[name]
        kind = spec.kind
        if kind is Kind.STRING:
            by_field[name] = cells
            vouch(j, cells.blank | cells.plain)
            literals[name] = cells.json_string
            # a new lead's type, email, phone ...: a choice as the API's word; judged with
            # --create only (an update does not send them)
            ok = None
            if spec.choices:
                ok, by_field[name] = _chosen(cells, spec, config, judged)
                literals[name] = by_field[name].json_string
            elif spec.form is not None and config.create:
                ok = forms_ok(cells.array, spec.form)
            if ok is not None and config.create:
                if spec.update:
                    vouch(j, cells.blank | ok)
                else:
                    create_ok &= cells.blank | ok
            continue
        if kind not in _SCALARS:  # a JSON questionnaire/meta column
            if sources[name] > 1:  # merged with other columns' answers: row by row
                vouch(j, cells.blank)
                continue
            # each distinct cell parsed and checked once, in this chunk (JSON cells are
            # seldom repeated across a file: not remembered)
            none = partial(pa.repeat, pa.scalar("", pa.string()), n)
            parsed, as_json = _by_distinct_value(
                cells, np.zeros(n, dtype=bool), none, spec, config, None
            )
            by_field[name] = cells
            vouch(j, cells.blank | parsed)
            literals[name] = as_json
            continue
        # a number, flag or date is judged by the cell's value (a formatted number's
        # number, not the text its format shows)
        cells = chunk.value_cells(j)
        if mapped is not None:
            cells = _put_in(cells, mapped)
        by_field[name] = cells
        if kind is Kind.INTEGER:
            ok = cells.whole_number
            literal: Callable[[], Any] = partial(getattr, cells, "array")
        elif kind is Kind.BOOLEAN:
            lower = pc.ascii_lower(cells.array)
            yes = pc.is_in(lower, value_set=pa.array(_TRUE_ASCII)).to_numpy(zero_copy_only=False)
            no = pc.is_in(lower, value_set=pa.array(_FALSE_ASCII)).to_numpy(zero_copy_only=False)
            ok = yes | no
            literal = partial(pc.if_else, pa.array(yes), "true", "false")
        else:  # a date: every form read here, by the one conversion of date text
            parsed = parse_dates(cells.array, config.date_order, config.timezone, chunk.date1904)
            ok = parsed.status == DATE_OK
            literal = partial(pc.binary_join_element_wise, '"', parsed.iso, '"', "")
            vouch(j, cells.blank | ok)
            literals[name] = literal
            continue
        ok, literal = _by_distinct_value(cells, ok, literal, spec, config, judged)
        vouch(j, cells.blank | ok)
        literals[name] = literal
    for cells in names:
        _split_names(cells, by_field, literals, config)
    simple &= ~unreadable
    blank &= ~unreadable  # row by row, which says so
    simple[list(chunk.extra_cells)] = False  # cells beyond the header: row by row
    if ids is not None:
        # a row with an id and nothing else: row by row, which checks the id
        id_only = blank & ~ids.blank
        simple &= ~id_only
        blank &= ~id_only
    row_ok = simple  # what keeps a row from the columnar path beyond its own cells
    simple = np.logical_and.reduce([row_ok, *(~bad for bad in faults.values())])
    return ColumnarRows(
        simple, blank, ids, by_field, literals, answers, meta, match, create_ok, row_ok, faults
    )


def _mapped_texts(chunk: Chunk, j: int, table: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """Which rows of column ``j`` the mapping file's value map maps, and the text each
    mapped value reads as (``cell_text``: the conversions read those texts as they read
    the values); None when it maps none. Each distinct cell is looked up once, as
    :func:`~leadsync.mapper.convert.mapped_value` looks it up."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    shown = chunk.display_cells(j).array
    distinct = pc.unique(shown)
    keys = [value_map_key(t) for t in distinct.to_pylist()]
    hit = np.array([k in table for k in keys], dtype=bool)
    if not hit.any():
        return None
    values = pa.array([cell_text(table[k]) if k in table else "" for k in keys], pa.string())
    where = pc.index_in(shown, value_set=distinct)
    return hit[where.to_numpy(zero_copy_only=False)], values.take(where)


def _put_in(cells: Any, mapped: tuple[Any, Any]) -> Any:
    """``cells`` with the mapped rows' texts in their place."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import Cells

    rows, texts = mapped
    return Cells(pc.if_else(pa.array(rows), texts, cells.array))


def _split_names(
    cells: Any, by_field: dict[str, Any], literals: dict[str, Callable[[], Any]], config: Config
) -> None:
    """A full-name column as first and last names, where the row has no column of its
    own for them (:func:`~leadsync.mapper.rows.split_name`, once per distinct name)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import Cells
    from leadsync.mapper.rows import split_name

    distinct = pc.unique(cells.array)
    parts = [split_name(t, config.name_order) for t in distinct.to_pylist()]
    where = pc.index_in(cells.array, value_set=distinct)
    for k, fname in enumerate(("first_name", "last_name")):
        part = pa.array([p[k] for p in parts], pa.string()).take(where)
        own = by_field.get(fname)
        if own is not None:
            part = pc.if_else(pa.array(own.blank), part, own.array)
        by_field[fname] = column = Cells(part)
        literals[fname] = column.json_string


_SCALARS = (Kind.INTEGER, Kind.BOOLEAN, Kind.DATE)  # dates: read by parse_dates
_JUDGED_MAX = 200_000  # distinct texts remembered across a file's chunks


def _by_distinct_value(
    cells: Any,
    ok: Any,
    literal: Callable[[], Any],
    spec: Field,
    config: Config,
    judged: Judgments | None,
) -> tuple[Any, Callable[[], Any]]:
    """The cells the vector checks above did not clear (``1,213``, ``✓`` ...), judged
    by the one conversion and the one rule book —
    :func:`~leadsync.mapper.convert.convert_value` and
    :func:`~leadsync.rules.check_payload` — once per distinct text, not once per row.
    A text that converts and passes is cleared, with its JSON; any other leaves its row
    to the row-by-row path, which says what is wrong."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rest = np.flatnonzero(~cells.blank & ~ok)
    if not rest.size:
        return ok, literal
    texts = cells.array.take(pa.array(rest, pa.int64()))
    distinct = pc.unique(texts)
    judged = {} if judged is None else judged
    if len(judged) > _JUDGED_MAX:
        judged.clear()  # a file of ever-new texts: bounded memory, not a growing dict
    verdicts = []
    for text in distinct.to_pylist():
        key = (spec.name, text)
        if key not in judged:
            judged[key] = _judge_one(text, spec, config)
        verdicts.append(judged[key])
    good = np.array([v is not None for v in verdicts], dtype=bool)
    where = pc.index_in(texts, value_set=distinct).to_numpy(zero_copy_only=False)
    cleared = rest[good[where]]
    if not cleared.size:
        return ok, literal
    ok = ok.copy()
    ok[cleared] = True
    mask = np.zeros(len(cells), dtype=bool)
    mask[cleared] = True
    distinct_of = np.zeros(len(cells), dtype=np.int64)  # each row's distinct text (0: any)
    distinct_of[rest] = where
    as_json = pa.array([v or "" for v in verdicts], pa.string())

    def combined() -> Any:
        return pc.if_else(pa.array(mask), as_json.take(pa.array(distinct_of)), literal())

    return ok, combined


def _chosen(cells: Any, spec: Field, config: Config, judged: Judgments | None) -> tuple[Any, Any]:
    """Which cells of a field of choices (a create's type, source) are one of them, each
    distinct text judged once; and the cells as the values sent (the API's word: ``Sale``
    is ``sale``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import Cells

    n = len(cells)
    none = partial(pa.repeat, pa.scalar("", pa.string()), n)
    ok, _ = _by_distinct_value(cells, np.zeros(n, dtype=bool), none, spec, config, judged)
    distinct = pc.unique(cells.array)
    words = [convert_value(t, spec, config) for t in distinct.to_pylist()]
    values = pa.array([w if isinstance(w, str) else "" for w in words], pa.string())
    return ok, Cells(values.take(pc.index_in(cells.array, value_set=distinct)))


def _judge_one(text: str, spec: Field, config: Config) -> str | None:
    """One distinct cell text: its value as JSON text, or None when it does not convert
    or breaks one of the field's own rules."""
    value = convert_value(text, spec, config)
    if value is BLANK or isinstance(value, Bad):
        return None
    # a create-only field (email, type ...) is judged by the create's rules: only a
    # row that creates a lead sends it
    operation = Operation.UPDATE if spec.update else Operation.CREATE
    if check_payload({spec.name: value}, operation=operation, whole=False):
        return None
    return json.dumps(value, ensure_ascii=False)


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
        if fname in ("questionnaire", "meta") and fname not in rows.literals:
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
    file share a few patterns: each is built once), as a dictionary array."""
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
    indices = pa.array(inverse.ravel().astype(np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array(texts, pa.string()))
