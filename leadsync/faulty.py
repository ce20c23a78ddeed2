"""The rows the columnar path could not clear, through the reference path
(:func:`~leadsync.mapper.map_chunk`, :func:`~leadsync.validator.validate_rows`), which
says what is wrong with each.

When only their problems are wanted (``leadsync validate``, the app's grid: an invalid
row's payload is never sent), a row is checked on *the cells at fault* — the cells the
columnar path did not vouch for and the fields a rule may refuse — with the row's id,
names and ``--match-by`` cell, its other cells left blank. A problem comes from its own
cell, or from those the reference reads whole (the id, the names, the questionnaire's
columns together), so such a row gets the very problems the whole row gets, for a
fraction of the work. A row that comes out blank or without a problem that way (the
columnar path doubted a cell the reference accepts) is checked again whole.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from leadsync.config import Config
from leadsync.fields import REQUIRED_NAMES
from leadsync.mapper import ColumnarRows, map_chunk
from leadsync.mapper.convert import fills_blank_cells
from leadsync.model import ColumnPlan, MappedRow
from leadsync.reader import Chunk
from leadsync.validator import validate_rows

# the columns a row is always checked with: what its row-level rules read
_WHOLE_KINDS = frozenset({"id", "match", "name"})


def reference_rows(
    chunk: Chunk,
    columns: ColumnarRows,
    plan: ColumnPlan,
    config: Config,
    positions: list[int],
    refusable: dict[str, Any],
    duplicates: Collection[str] = frozenset(),
    office_ids: Collection[int] | None = None,
    people: Collection[str] = frozenset(),
    *,
    payloads: bool = True,
) -> list[tuple[int, MappedRow]]:
    """The rows at ``positions`` mapped and validated by the reference path, with their
    positions. ``refusable``: the chunk's :func:`~leadsync.validator.field_faults` (by
    field; ``columns.faults`` are by column).
    ``payloads=False``: the rows may be checked on their cells at fault only (see the
    module), and then an invalid row's payload holds only what those cells give."""
    import numpy as np

    def checked(part: Chunk, blanks: list[int] | None = None) -> list[MappedRow]:
        rows = map_chunk(part, plan, config)
        if blanks is not None:  # the rows with nothing mapped (before an id says otherwise)
            blanks += [k for k, row in enumerate(rows) if row.blank]
        validate_rows(rows, plan, config, duplicates, office_ids, people)
        return rows

    if not positions:
        return []
    if payloads or not narrowing_applies(config):
        return list(zip(positions, checked(chunk.take(positions)), strict=True))
    at = np.asarray(positions)
    eligible = columns.row_ok[at]
    narrow = at[eligible].tolist()
    found: dict[int, MappedRow] = {}
    blanks: list[int] = []
    if narrow:
        part = _at_fault(chunk, columns, plan, refusable, narrow)
        found.update(zip(narrow, checked(part, blanks), strict=True))
    again = [narrow[k] for k in blanks]
    again += [i for i, row in found.items() if not row.problems and not row.blank]
    again += at[~eligible].tolist()
    if again:
        found.update(zip(again, checked(chunk.take(again)), strict=True))
    return sorted(found.items())


def narrowing_applies(config: Config) -> bool:
    """Whether a row's problems can be found on its cells at fault alone: not for a
    new lead (its rules read the whole row: a type and what it needs, the person), nor
    where a value map gives a blank cell a value."""
    return not config.create and not fills_blank_cells(config)


def _at_fault(
    chunk: Chunk,
    columns: ColumnarRows,
    plan: ColumnPlan,
    refusable: dict[str, Any],
    at: list[int],
) -> Chunk:
    """The rows at ``at`` with only the cells their problems can come from: each field
    at fault (every column that feeds it), the id, the names and the ``--match-by``
    cell; every other cell blank."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    part = chunk.take(at)
    rows = np.asarray(at, dtype=np.int64)
    implicated: dict[str, Any] = {}  # field -> the rows (of part) where it is at fault
    for j, bad in columns.faults.items():
        target = plan.targets[j]
        fname = target.field if target is not None else ""
        implicated[fname] = implicated.get(fname, False) | bad[rows]
    for fname, bad in refusable.items():
        implicated[fname] = implicated.get(fname, False) | bad[rows]
    kept: list[Any] = []
    for j, column in enumerate(part.columns):
        target = plan.targets[j]
        if target is None or target.kind == "ignore":
            keep: Any = False  # not read by the mapper at all
        elif target.kind in _WHOLE_KINDS or target.field in REQUIRED_NAMES:
            keep = True
        else:
            keep = implicated.get(target.field, False)
        if keep is True or (keep is not False and keep.all()):
            kept.append(column)
        elif isinstance(column, list):
            flags = keep.tolist() if keep is not False else [False] * len(column)
            kept.append([c if k else None for c, k in zip(column, flags, strict=True)])
        elif keep is False:
            kept.append(pa.nulls(len(column), column.type))
        else:
            kept.append(pc.if_else(pa.array(keep), column, pa.scalar(None, column.type)))
    return Chunk(kept, part.row_numbers, part.extra_cells, part.date1904)
