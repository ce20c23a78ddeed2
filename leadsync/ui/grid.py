"""A validated file's rows for the app's grid, kept in SQLite in the private folder so a
100k-row file is paged (a page of rows in the DOM at a time), not held as objects.

The rows come from :func:`leadsync.checks.checked_chunks` (the columnar path, as `leadsync
validate` reads them) or :func:`leadsync.run.validated_rows`: the same verdicts and
problems as the reports (the grid draws them, it does not judge).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from leadsync.checks import checked_chunks
from leadsync.config import Config
from leadsync.mapper import fast_path_applies
from leadsync.model import CheckedChunk, ColumnPlan, MappedRow
from leadsync.private import ensure_private
from leadsync.reader import Table, display_text
from leadsync.run import validated_rows
from leadsync.validator import IdScan

PAGE_ROWS = 50


@dataclass(frozen=True)
class GridRow:
    """One row as the grid draws it: its cells as text, and its problems by column."""

    row: int
    outcome: str
    cells: list[str]
    by_column: dict[int, list[tuple[str, str]]]  # 0-based column -> [(code, message)]
    others: list[tuple[str, str]]  # problems of the row as a whole


class Grid:
    """The rows of one validation, pageable; ``only_problems`` pages the invalid ones."""

    def __init__(self, path: Path, headers: tuple[str, ...]) -> None:
        self.path, self.headers = path, headers
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.mutex = threading.Lock()

    @classmethod
    def build(
        cls,
        path: Path,
        table: Table,
        plan: ColumnPlan,
        config: Config,
        scan: IdScan,
        *,
        fast: bool = True,
    ) -> Grid:
        """Read every row of ``table`` and keep it for paging (``fast=False``: row by
        row, the reference the columnar build is tested against). A validation run
        fills one as it goes instead (:class:`GridWriter` observes it)."""
        writer = GridWriter(path)
        writer.opened(table.headers)
        if fast and fast_path_applies(plan, config):
            for checked in checked_chunks(table, plan, config, scan, None, payloads=False):
                writer.checked(checked)
        else:
            for row, cells in validated_rows(table, plan, config, scan, fast=False):
                writer.row(row, cells)
        return writer.finish()

    def count(self, only_problems: bool) -> int:
        with self.mutex:
            sql = "SELECT count(*) FROM rows" + (
                " WHERE outcome = 'invalid'" if only_problems else ""
            )
            found: int = self.db.execute(sql).fetchone()[0]
        return found

    def page(self, number: int, only_problems: bool, size: int = PAGE_ROWS) -> list[GridRow]:
        """Page ``number`` (from 1) of the rows, in file order."""
        where = "WHERE outcome = 'invalid' " if only_problems else ""
        with self.mutex:
            found = self.db.execute(
                f"SELECT row, outcome, cells, problems FROM rows {where}"
                "ORDER BY seq LIMIT ? OFFSET ?",
                (size, (max(number, 1) - 1) * size),
            ).fetchall()
        return [_grid_row(*r) for r in found]

    def close(self) -> None:
        with self.mutex:
            self.db.close()


_SEP = "\x1f"  # the ASCII unit separator: between a row's cells in the store
_INSERT = "INSERT INTO rows VALUES (?, ?, ?, ?, ?)"


class GridWriter:
    """Fills a :class:`Grid` from a validation run as it reads the file (the run's
    ``observer``): a checked chunk at a time on the columnar path, else row by row."""

    def __init__(self, path: Path) -> None:
        ensure_private(path)
        self.grid = Grid(path, ())
        self.grid.db.execute(
            "CREATE TABLE rows (seq INTEGER PRIMARY KEY, row INTEGER, outcome TEXT, "
            "cells TEXT, problems TEXT)"
        )
        self.seq = 0
        self.batch: list[tuple[int, int, str, str, str]] = []

    def opened(self, headers: tuple[str, ...]) -> None:
        self.grid.headers = headers

    def checked(self, checked: CheckedChunk) -> None:
        # column-wise: the cells joined by pyarrow, a payload never built
        batch = list(_chunk_rows(checked, self.seq))
        self.grid.db.executemany(_INSERT, batch)
        self.seq += len(batch)

    def row(self, row: MappedRow, cells: tuple[object, ...]) -> None:
        texts = _SEP.join(display_text(c).replace(_SEP, " ") for c in cells)
        self.batch.append((self.seq, row.row, _outcome(row), texts, _problems(row)))
        self.seq += 1
        if len(self.batch) >= 5000:
            self.grid.db.executemany(_INSERT, self.batch)
            self.batch.clear()

    def finish(self) -> Grid:
        db = self.grid.db
        db.executemany(_INSERT, self.batch)
        db.execute("CREATE INDEX rows_invalid ON rows (outcome, seq)")
        db.commit()
        return self.grid


def _chunk_rows(checked: CheckedChunk, first: int) -> Iterator[tuple[int, int, str, str, str]]:
    import pyarrow.compute as pc

    chunk = checked.chunk
    columns = [
        pc.replace_substring(chunk.display_cells(j).array, _SEP, " ")
        for j in range(len(chunk.columns))
    ]
    if columns:
        joined = pc.binary_join_element_wise(*columns, _SEP, null_handling="replace").to_pylist()
    else:
        joined = [""] * len(chunk)
    slow = dict(checked.slow)
    blank = checked.columns.blank
    numbers = chunk.row_numbers
    for i, texts in enumerate(joined):
        row = slow.get(i)
        if row is not None:
            yield first + i, row.row, _outcome(row), texts, _problems(row)
        else:
            outcome = "skipped_blank" if blank[i] else "valid"
            yield first + i, int(numbers[i]), outcome, texts, ""


def _outcome(row: MappedRow) -> str:
    return "skipped_blank" if row.blank else "invalid" if row.problems else "valid"


def _problems(row: MappedRow) -> str:
    if not row.problems:
        return ""
    found = [(p.column_index, p.code, p.message) for p in row.problems]
    return json.dumps(found, ensure_ascii=False)


def _grid_row(row: int, outcome: str, cells: str, problems: str) -> GridRow:
    by_column: dict[int, list[tuple[str, str]]] = {}
    others: list[tuple[str, str]] = []
    for column, code, message in json.loads(problems) if problems else []:
        if column is None:
            others.append((code, message))
        else:
            by_column.setdefault(int(column), []).append((code, message))
    return GridRow(row, outcome, cells.split(_SEP), by_column, others)
