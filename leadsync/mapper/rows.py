"""The row-by-row mapper (:func:`map_chunk`): the reference the columnar path is held
to, and the path of every row the columnar path cannot vouch for."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from leadsync.config import NAME_ORDERS, Config
from leadsync.fields import (
    FIELD_NAMES,
    FIELDS_BY_NAME,
)
from leadsync.mapper.convert import (
    BLANK,
    Bad,
    convert_column,
    fills_blank_cells,
    lead_id_text,
    mapped_value,
)
from leadsync.model import Code, ColumnPlan, MappedRow, Problem, Target
from leadsync.reader import Chunk, cell_text, excel_error


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
    every_cell = fills_blank_cells(config)  # else a blank cell is BLANK: not converted
    names: list[tuple[int, list[Any]]] = []  # full-name columns, split once the rest is in
    for j, target in enumerate(plan.targets):
        if target is None or target.kind in ("ignore", "id"):
            continue
        if target.kind == "name":
            names.append((j, columns[j]))
            continue
        if target.kind == "match":
            for i, cell in enumerate(columns[j]):
                if not _flagged_error(rows[i], cell, plan, j):
                    rows[i].match = cell_text(cell) or None
                    if config.create and rows[i].match:  # a new lead's contact detail too
                        rows[i].payload[target.name] = rows[i].match
                        rows[i].sources[target.name] = j
                        has_data[i] = True
            continue
        column = columns[j]
        where: Any = range(n)
        if not every_cell:
            where = [i for i, cell in enumerate(column) if cell is not None and cell != ""]
            column = [column[i] for i in where] if len(where) < n else column
        converted = _converted(column, target, config, chunk.date1904)
        for k, i in enumerate(where):
            cell = column[k]
            shown = excel_error(cell)
            value = converted[k] if shown is None else _excel_error(shown)
            if value is BLANK:
                continue
            has_data[i] = True
            row = rows[i]
            if isinstance(value, Bad):
                row.problems.append(_cell_problem(row, value, plan, j))
                continue
            _place(row, target, value, j)
    for j, column in names:
        for i, cell in enumerate(column):
            if _flagged_error(rows[i], cell, plan, j):
                has_data[i] = True
                continue
            parts = split_name(cell_text(cell), config.name_order)
            for fname, part in zip(("first_name", "last_name"), parts, strict=True):
                if part and fname not in rows[i].payload:  # a column of its own wins
                    rows[i].payload[fname] = part
                    rows[i].sources[fname] = j
                    has_data[i] = True
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
                    code=Code.EXTRA_CELLS,
                    stage="read",
                    message=f"{spill} cell(s) beyond the last header column: add a header "
                    "or remove them",
                )
            )
    return rows


def one_per_row(
    rows: Iterable[tuple[MappedRow, tuple[Any, ...]]], plan: ColumnPlan
) -> Iterator[tuple[MappedRow, tuple[Any, ...]]]:
    """Rows with their cells, each spreadsheet row once: a leadsync report read back as
    input has a line per problem, all carrying the row's original number."""
    at = plan.report_row_index
    if at is None:
        yield from rows
        return
    seen: set[Any] = set()
    for row, cells in rows:
        if cells[at] not in seen:
            seen.add(cells[at])
            yield row, cells


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


def _flagged_error(row: MappedRow, cell: Any, plan: ColumnPlan, j: int) -> bool:
    """Whether the cell shows an Excel error; if so, the row says so (a column whose
    cells are not converted: a --match-by value, a full name)."""
    shown = excel_error(cell)
    if shown is not None:
        row.problems.append(_cell_problem(row, _excel_error(shown), plan, j))
    return shown is not None


def _excel_error(shown: str) -> Bad:
    return Bad(
        Code.EXCEL_ERROR,
        f"the cell shows the Excel error {shown}: fix the formula behind it, or clear the cell",
    )


def _converted(
    column: list[Any], target: Target, config: Config, date1904: bool = False
) -> list[Any]:
    """Every cell of a column converted for its target (value maps applied first)."""
    name = target.name if target.kind == "field" else "questionnaire"
    if config.values.get(name) and target.kind != "meta":
        column = [mapped_value(cell, name, config) for cell in column]
    if target.kind == "field":
        return convert_column(column, FIELDS_BY_NAME[target.name], config, date1904)
    return [_answer(cell) for cell in column]  # a question's answer, a meta value: text


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


def split_name(text: str, order: str) -> tuple[str, str]:
    """A full name as (first name, last name), either "" when it is not there.

    ``first last``: the last word is the last name, the words before it the first name
    (``Ann Marie Lee`` -> ``Ann Marie``, ``Lee``); one word is a first name only.
    ``last, first``: the text before the first comma is the last name (``Lee, Ann``); a
    name without a comma is read the other way. Runs of spaces count as one.
    """
    words = text.split()
    if order == NAME_ORDERS[1] and "," in text:
        last, _, first = text.partition(",")
        return " ".join(first.split()), " ".join(last.split())
    if not words:
        return "", ""
    if len(words) == 1:
        return words[0], ""
    return " ".join(words[:-1]), words[-1]
