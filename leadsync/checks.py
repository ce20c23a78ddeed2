"""The check stage: chunks of rows through the columnar checks, the rows those cannot
clear through the reference (:mod:`leadsync.faulty`), each chunk as a
:class:`~leadsync.model.CheckedChunk`; and a workbook read in pieces checked as it is
parsed (:func:`prechecked`)."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from leadsync.config import Config
from leadsync.faulty import reference_rows
from leadsync.mapper import (
    Judgments,
    fast_path_applies,
    fields_sent,
    lead_id_texts,
    map_columns,
    payload_json,
)
from leadsync.model import CheckedChunk, ColumnPlan, MappedRow
from leadsync.reader import Chunk, Table
from leadsync.threads import prefetch
from leadsync.validator import (
    IdScan,
    IdTally,
    check_columns,
    field_faults,
    name_problems,
    names_absent,
    names_missing_only,
)

# Rows checked before the last id is counted are held (cells and verdicts, ~2 kB a row
# of 20 columns) up to about this many; past it the rest of the ids are counted first
_HELD_ROWS = 100_000
# The rows of the pieces left then are read out of calamine for their ids, and kept for
# their checks up to this many (~25 MB of cells); past it, read out again
_KEPT_ROWS = 20_000


def _columnar_rows(
    chunk: Any,
    columns: Any,
    plan: ColumnPlan,
    lead_ids: Any,
    where: list[int],
    payloads: bool = True,
) -> list[MappedRow]:
    """The rows at ``where`` as the columnar path built them: lead id, payload (none for
    a blank row, or where ``payloads`` is False) and ``--match-by`` value."""
    import json

    import pyarrow as pa

    at = pa.array(where, pa.int64())
    texts = payload_json(columns, plan).take(at).to_pylist() if payloads else None
    leads = lead_ids.take(at).to_pylist()
    match = columns.match
    matches = match.array.take(at).to_pylist() if match is not None else [""] * len(where)
    rows = []
    for k, i in enumerate(where):
        blank = bool(columns.blank[i])
        payload = {} if blank or texts is None else json.loads(texts[k])
        row = MappedRow(chunk.row_numbers[i], leads[k] or None, payload, blank=blank)
        row.match = matches[k] or None
        rows.append(row)
    return rows


def _unnamed_rows(
    chunk: Any,
    columns: Any,
    plan: ColumnPlan,
    lead_ids: Any,
    unnamed: Any,
    payloads: bool = True,
) -> list[tuple[int, MappedRow]]:
    """The rows that lack only a required name (see
    :func:`~leadsync.validator.names_missing_only`): the payload the columnar path
    built (where wanted), and the rule book's problems."""
    import numpy as np

    where = np.flatnonzero(unnamed).tolist()
    rows = _columnar_rows(chunk, columns, plan, lead_ids, where, payloads)
    absent = [
        (fname, rows_absent[where]) for fname, rows_absent in names_absent(columns, plan).items()
    ]
    add_problems = name_problems(plan)
    for k, row in enumerate(rows):
        add_problems(row, [fname for fname, lacking in absent if lacking[k]])
    return list(zip(where, rows, strict=True))


def rows_of(checked: CheckedChunk, plan: ColumnPlan) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
    """A checked chunk's rows as :class:`MappedRow` objects, in order."""
    chunk = checked.chunk
    rows = dict(checked.slow)
    cleared = [i for i in range(len(chunk)) if i not in rows]
    built = _columnar_rows(chunk, checked.columns, plan, checked.lead_ids, cleared)
    rows.update(zip(cleared, built, strict=True))
    for i, cells in enumerate(chunk.rows()):
        yield rows[i], cells


def prechecks_apply(plan: ColumnPlan, config: Config) -> bool:
    return (
        plan.id_index is not None
        and plan.report_row_index is None
        and not config.create
        and fast_path_applies(plan, config)
    )


def prechecked(
    table: Table,
    plan: ColumnPlan,
    config: Config,
    office_ids: Collection[int] | None,
    *,
    stream_once_read: bool = True,
    held_rows: int = _HELD_ROWS,
) -> tuple[IdScan, Iterator[CheckedChunk], int]:
    """Check a workbook's first pieces while calamine parses the rest of it: each piece's
    ids are counted, then its rows are checked against the ids repeated so far. Once the
    whole sheet is parsed, the rest of its ids are counted and the rest of its rows are
    checked as they are handed on. A row's verdict depends on the rest of the file only
    through its id being repeated, so a piece checked early that holds an id found
    repeated later is checked again: the verdicts are those of :func:`checked_chunks`
    after a whole id pass, to the row. ``held_rows``: past this many rows checked early,
    the rest of the ids are counted (as the pieces are parsed) before any more is
    checked. ``stream_once_read=False``: every piece is checked before the last is
    counted (and checked again if it must be)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool

    index = plan.id_index
    assert index is not None
    tally = IdTally()
    judged: Judgments = {}

    def checked(scan: IdScan, chunks: Iterator[Chunk]) -> Iterator[CheckedChunk]:
        return checked_chunks(
            table, plan, config, scan, office_ids, payloads=False, chunks=chunks, judged=judged
        )

    early: list[tuple[list[CheckedChunk], pa.Array, frozenset[str]]] = []
    held = 0
    parts = table.parts(once=True)  # a piece is let go with its part
    for part in parts:
        blocks = [tally.add(b) for b in part.column_text(table, index, config.chunk_rows)]
        scan = tally.scan()
        done = list(checked(scan, prefetch(part.fast_chunks(table, config.chunk_rows))))
        ids = pa.concat_arrays(blocks) if blocks else pa.array([], pa.string())
        early.append((done, ids, scan.duplicates))
        held += len(ids)
        if stream_once_read and (table.read_through or held >= held_rows):
            break
    # the rest of the ids, each piece's as it is parsed
    rest, kept = [], 0
    for part in parts:
        for block in part.column_text(table, index, config.chunk_rows):
            tally.add(block)
            kept += len(block)
        if kept > _KEPT_ROWS:
            part.release()  # read out again when checked
        rest.append(part)
    scan = tally.scan()

    def handed() -> Iterator[CheckedChunk]:
        while early:
            done, ids, used = early.pop(0)
            later = scan.duplicates - used
            if later:
                # the scan's own id texts, row by row: the rows whose id turned out repeated
                hits = to_numpy_bool(pc.is_in(ids, pa.array(sorted(later), pa.string())))
                if hits.any():
                    starts = np.cumsum([0, *(len(c.chunk) for c in done)]).tolist()
                    done = [
                        _rechecked(c, plan, config, scan, office_ids, later, hits[a:b])
                        for c, a, b in zip(done, starts, starts[1:], strict=False)
                    ]
            yield from done
        while rest:
            part = rest.pop(0)
            yield from checked(scan, prefetch(part.fast_chunks(table, config.chunk_rows)))

    return scan, handed(), sum(len(done) for done, _, _ in early)


def _rechecked(
    checked: CheckedChunk,
    plan: ColumnPlan,
    config: Config,
    scan: IdScan,
    office_ids: Collection[int] | None,
    later: frozenset[str],
    hit: Any,
) -> CheckedChunk:
    """``checked`` (with ``payloads=False``) as :func:`checked_chunks` checks it against
    ``scan``, whose repeated ids add ``later`` to those it was checked against: only the
    rows holding one of those ids (``hit``: by the scan's reading of the id) can change,
    and they go to the reference path (as there: an id on another row is never cleared
    column by column)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from leadsync.columnar import to_numpy_bool

    columns = checked.columns
    if columns.ids is not None:  # ... and by the text the columnar checks look up
        found = pa.array(sorted(later), pa.string())
        hit = hit | to_numpy_bool(pc.is_in(columns.ids.array, value_set=found))
    positions = np.flatnonzero(hit & ~columns.blank).tolist()
    if not positions:
        return checked
    faults = field_faults(columns, config, office_ids)
    again = reference_rows(
        checked.chunk,
        columns,
        plan,
        config,
        positions,
        faults,
        scan.duplicates,
        office_ids,
        scan.people,
        payloads=False,
    )
    again_at = set(positions)
    kept = [(k, row) for k, row in checked.slow if k not in again_at]
    slow = sorted([*kept, *again], key=lambda entry: entry[0])
    return CheckedChunk(checked.chunk, columns, checked.lead_ids, checked.fields, slow)


def checked_chunks(
    table: Table,
    plan: ColumnPlan,
    config: Config,
    scan: IdScan,
    office_ids: Collection[int] | None,
    *,
    payloads: bool = True,
    chunks: Iterator[Chunk] | None = None,
    judged: Judgments | None = None,
) -> Iterator[CheckedChunk]:
    """Every chunk (of ``table``, or ``chunks`` of it) through the columnar fast path;
    the rows it cannot clear are mapped and validated row by row (they carry the
    problems). ``payloads=False``: an invalid row's payload is not wanted (see
    :mod:`leadsync.faulty`). ``judged``: the distinct texts judged so far (kept across
    calls)."""
    import numpy as np
    import pyarrow as pa

    duplicates = scan.duplicates
    if judged is None:
        judged = {}  # one file's distinct texts, judged once across its chunks
    if chunks is None:
        chunks = prefetch(table.chunks(config.chunk_rows))
    for chunk in chunks:
        columns = map_columns(chunk, plan, config, judged)
        faults = field_faults(columns, config, office_ids)
        cleared = check_columns(
            columns, plan, config, duplicates, office_ids, scan.people, faults=faults
        )
        unnamed = names_missing_only(
            columns, plan, config, cleared, duplicates, office_ids, faults=faults
        )
        positions = np.flatnonzero(~(cleared | columns.blank | unnamed)).tolist()
        slow = reference_rows(
            chunk,
            columns,
            plan,
            config,
            positions,
            faults,
            duplicates,
            office_ids,
            scan.people,
            payloads=payloads,
        )
        lead_ids = (
            # the id cell's value, as the row-by-row path reads it: a 1213 that shows
            # 1,213 (#,##0) is lead 1213, in the URL, the journal and the reports
            lead_id_texts(columns.ids)
            if columns.ids is not None
            else pa.repeat(pa.scalar("", pa.string()), len(chunk))  # --match-by alone
        )
        if unnamed.any():
            unnamed_rows = _unnamed_rows(chunk, columns, plan, lead_ids, unnamed, payloads)
            slow = sorted([*slow, *unnamed_rows])
        fields = fields_sent(columns, plan)
        yield CheckedChunk(chunk, columns, lead_ids, fields, slow)
