"""Report stage: failures.csv, successes.csv, summary.json and report.xlsx (spec §6).

Rows are appended as they finish, so a crash leaves a partial but true report. Every file
is created with mode 0600: reports hold personal data.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from leadsync.defaults import XLSX_FULL_ROWS, XLSX_MAX_ROWS
from leadsync.mapper import MappedRow, Problem
from leadsync.reader import Table, cell_text

OUTCOMES = (
    "valid",
    "updated",
    "unchanged",
    "invalid",
    "rejected",
    "failed",
    "unknown",
    "not_attempted",
    "skipped_blank",
)
FAILURE_OUTCOMES = frozenset({"invalid", "rejected", "failed", "unknown", "not_attempted"})
FAILURE_COLUMNS = ("row", "lead_id", "outcome", "stage", "field", "code", "message", "http_status")
SUCCESS_COLUMNS = ("row", "lead_id", "outcome", "http_status", "fields_sent", "payload")

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_RED = "FFC7CE"
_AMBER = "FFEB9C"
_GREEN = "C6EFCE"


def neutralise(text: str) -> str:
    """Stop a spreadsheet from running a cell as a formula (CSV injection)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def unneutralise(text: str) -> str:
    """Undo :func:`neutralise` when a leadsync report is read back as input."""
    if text.startswith("'") and text[1:].startswith(_FORMULA_START):
        return text[1:]
    return text


def report_prefix(headers: tuple[str, ...]) -> int:
    """How many leading columns are leadsync's own, if ``headers`` are a report's."""
    for prefix in (FAILURE_COLUMNS, SUCCESS_COLUMNS):
        if headers[: len(prefix)] == prefix:
            return len(prefix)
    return 0


def private_file(path: Path, mode: str = "w") -> IO[Any]:
    """Open ``path`` for writing, created with mode 0600 (owner only)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    os.chmod(path, 0o600)  # the file may have existed with wider permissions
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8", newline="")


def display_text(value: Any) -> str:
    """A cell as text for a CSV report: strings untouched, typed values as the user sees them."""
    return value if isinstance(value, str) else cell_text(value)


class ReportWriter:
    """Writes the four reports for one run, a row at a time."""

    def __init__(
        self,
        directory: Path,
        table: Table,
        *,
        xlsx: bool = True,
        total_rows: int = 0,
        xlsx_full_rows: int = XLSX_FULL_ROWS,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.table = table
        self.headers = list(table.headers)
        self.counts: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.paths = {
            "failures": directory / "failures.csv",
            "successes": directory / "successes.csv",
            "summary": directory / "summary.json",
        }
        self._failures_fh = private_file(self.paths["failures"])
        self._successes_fh = private_file(self.paths["successes"])
        self._failures = csv.writer(self._failures_fh)
        self._successes = csv.writer(self._successes_fh)
        self._failures.writerow([*FAILURE_COLUMNS, *map(neutralise, self.headers)])
        self._successes.writerow([*SUCCESS_COLUMNS, *map(neutralise, self.headers)])
        self._xlsx = (
            _XlsxReport(directory / "report.xlsx", table, full=total_rows <= xlsx_full_rows)
            if xlsx
            else None
        )
        if self._xlsx is not None:
            self.paths["report_xlsx"] = self._xlsx.path

    def write(
        self,
        row: MappedRow,
        outcome: str,
        cells: Sequence[Any],
        *,
        problems: Sequence[Problem] = (),
        http_status: int | None = None,
        fields_sent: Sequence[str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        """Record one row's outcome in every report."""
        self.counts[outcome] += 1
        original = [neutralise(display_text(c)) for c in cells]
        lead = neutralise(row.lead_id or "")
        status = "" if http_status is None else str(http_status)
        if outcome in FAILURE_OUTCOMES:
            items = problems or [Problem(row=row.row, code=outcome, message=outcome, stage="send")]
            for p in items:
                self.codes[p.code] += 1
                self._failures.writerow(
                    [
                        row.row,
                        lead,
                        outcome,
                        p.stage,
                        p.field or "",
                        p.code,
                        neutralise(p.message),
                        status,
                        *original,
                    ]
                )
        else:  # valid, updated, unchanged, skipped_blank: every row is in one of the two
            sent = ",".join(fields_sent if fields_sent is not None else (payload or {}))
            body = json.dumps(payload, ensure_ascii=False) if payload is not None else ""
            self._successes.writerow(
                [row.row, lead, outcome, status, sent, neutralise(body), *original]
            )
        if self._xlsx is not None:
            self._xlsx.write(row.row, cells, outcome, problems)

    def flush(self) -> None:
        self._failures_fh.flush()
        self._successes_fh.flush()

    def close(self, summary: dict[str, Any]) -> None:
        """Finish every file; ``summary`` is written to summary.json as given."""
        self._failures_fh.close()
        self._successes_fh.close()
        if self._xlsx is not None:
            self._xlsx.close(summary)
        with private_file(self.paths["summary"]) as fh:
            json.dump(summary, fh, indent=2, ensure_ascii=False, default=str)
            fh.write("\n")


def _outcome_colour(outcome: str) -> str | None:
    if outcome in ("valid", "updated", "unchanged"):
        return _GREEN
    if outcome in ("invalid", "rejected"):
        return _RED
    return None if outcome == "skipped_blank" else _AMBER


class _XlsxReport:
    """The user's own rows, invalid cells red with a comment, an outcome column, a summary.

    In full mode every row sits at the row number it has in the user's file. For a large
    file (``full=False``) only rows that need attention are copied, each with a leading
    ``row`` column that says where it came from.
    """

    def __init__(self, path: Path, table: Table, *, full: bool) -> None:
        from openpyxl import Workbook
        from openpyxl.styles import Font, PatternFill

        self.path = path
        self.full = full
        self.width = len(table.headers)
        self.book = Workbook(write_only=True)
        self.sheet = self.book.create_sheet(table.sheet or "Leads")
        self.summary_sheet = self.book.create_sheet("Summary")
        self.fills = {c: PatternFill("solid", fgColor=c) for c in (_RED, _AMBER, _GREEN)}
        self.bold = Font(bold=True)
        self.next_row = 1
        self.omitted = 0
        header = [*table.headers, "leadsync outcome", "leadsync problems"]
        if full:
            self.lead: list[Any] = [None] * table.first_column
            while self.next_row < table.header_row:
                self.sheet.append([])
                self.next_row += 1
        else:
            self.lead = []
            header.insert(0, "row")
        self.sheet.freeze_panes = f"A{self.next_row + 1}"
        self._append([self._cell(h, font=self.bold) for h in header])

    def _append(self, cells: list[Any]) -> None:
        self.sheet.append(self.lead + cells)
        self.next_row += 1

    def _cell(
        self, value: Any, *, fill: str | None = None, font: Any = None, comment: str | None = None
    ) -> Any:
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.comments import Comment

        if isinstance(value, str):
            value = _ILLEGAL_XLSX.sub("", value)
        cell = WriteOnlyCell(self.sheet, value=value)
        if isinstance(value, str):
            cell.data_type = "s"  # a text starting with '=' stays text, never a formula
        if fill is not None:
            cell.fill = self.fills[fill]
        if font is not None:
            cell.font = font
        if comment:
            cell.comment = Comment(
                _ILLEGAL_XLSX.sub("", comment), "leadsync", width=300, height=120
            )
        return cell

    def write(
        self, row_number: int, cells: Sequence[Any], outcome: str, problems: Sequence[Problem]
    ) -> None:
        if not self.full and outcome not in FAILURE_OUTCOMES:
            return
        if self.next_row > XLSX_MAX_ROWS or (self.full and row_number < self.next_row):
            self.omitted += 1
            return
        while self.full and self.next_row < row_number:
            self._append([])
        by_column: dict[int, list[str]] = {}
        for p in problems:
            if p.column_index is not None:
                by_column.setdefault(p.column_index, []).append(p.message)
        out = [] if self.full else [row_number]
        for j in range(self.width):
            value = cells[j] if j < len(cells) else None
            if isinstance(value, str) and not value:
                value = None
            messages = by_column.get(j)
            if messages:
                out.append(self._cell(value, fill=_RED, comment="\n".join(messages)))
            else:
                out.append(self._cell(value))
        out.append(self._cell(outcome, fill=_outcome_colour(outcome)))
        summary = "; ".join((f"{p.column}: " if p.column else "") + p.message for p in problems)
        out.append(self._cell(summary or None))
        self._append(out)

    def close(self, summary: Mapping[str, Any]) -> None:
        s = self.summary_sheet
        s.append([self._cell("leadsync report", font=self.bold)])
        for key in ("command", "run_id", "started_at", "finished_at", "rows"):
            if key in summary:
                s.append([key, summary[key]])
        file = summary.get("file", {})
        for key in ("name", "sheet", "sha256"):
            if file.get(key):
                s.append([f"file {key}", file[key]])
        s.append([])
        s.append([self._cell("outcome", font=self.bold), self._cell("rows", font=self.bold)])
        for outcome, n in summary.get("outcomes", {}).items():
            if n:
                s.append([outcome, n])
        codes = summary.get("problems_by_code", {})
        if codes:
            s.append([])
            s.append([self._cell("problem", font=self.bold), self._cell("count", font=self.bold)])
            for code, n in codes.items():
                s.append([code, n])
        unmapped = summary.get("unmapped_columns", [])
        if unmapped:
            s.append([])
            s.append([self._cell("columns not sent (unmapped)", font=self.bold)])
            for h in unmapped:
                s.append([self._cell(h)])
        if not self.full:
            s.append([])
            s.append(
                [
                    "This file is large: the first sheet holds only the rows that need "
                    "attention; every row is in the CSV reports."
                ]
            )
        if self.omitted:
            s.append([])
            s.append([f"{self.omitted} rows beyond Excel's row limit are in the CSV reports only"])
        with private_file(self.path, "wb") as fh:
            self.book.save(fh)
