"""A validated file's rows for the app's grid, kept in SQLite in the private folder so a
100k-row file is paged (a page of rows in the DOM at a time), not held as objects.

The rows come from :func:`leadsync.run.validated_rows`: the same verdicts, payloads and
problems as `leadsync validate` (the grid draws them, it does not judge).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadsync.config import Config
from leadsync.model import ColumnPlan
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
        cls, path: Path, table: Table, plan: ColumnPlan, config: Config, scan: IdScan
    ) -> Grid:
        ensure_private(path)
        grid = cls(path, table.headers)
        db = grid.db
        db.execute(
            "CREATE TABLE rows (seq INTEGER PRIMARY KEY, row INTEGER, outcome TEXT, "
            "cells TEXT, problems TEXT)"
        )
        batch: list[tuple[int, int, str, str, str]] = []
        for seq, (row, cells) in enumerate(validated_rows(table, plan, config, scan)):
            outcome = "skipped_blank" if row.blank else "invalid" if row.problems else "valid"
            problems = [(p.column_index, p.code, p.message) for p in row.problems]
            batch.append(
                (
                    seq,
                    row.row,
                    outcome,
                    json.dumps([display_text(c) for c in cells], ensure_ascii=False),
                    json.dumps(problems, ensure_ascii=False),
                )
            )
            if len(batch) >= 5000:
                db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)", batch)
                batch.clear()
        db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)", batch)
        db.execute("CREATE INDEX rows_invalid ON rows (outcome, seq)")
        db.commit()
        return grid

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


def _grid_row(row: int, outcome: str, cells: str, problems: str) -> GridRow:
    by_column: dict[int, list[tuple[str, str]]] = {}
    others: list[tuple[str, str]] = []
    for column, code, message in json.loads(problems):
        if column is None:
            others.append((code, message))
        else:
            by_column.setdefault(int(column), []).append((code, message))
    texts: list[Any] = json.loads(cells)
    return GridRow(row, outcome, [str(t) for t in texts], by_column, others)
