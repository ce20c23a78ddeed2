"""report.xlsx: the user's own rows with invalid cells red and commented, an outcome
column, a problems column and a Summary sheet (spec §6), written with XlsxWriter in
constant-memory mode. :class:`~leadsync.report.ReportWriter` runs it in-process for a
small file and in a process of its own for a large one."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from leadsync.defaults import (
    XLSX_ATTENTION_ROWS,
    XLSX_COMMENT_ROWS,
    XLSX_MAX_COLUMNS,
    XLSX_MAX_ROWS,
)
from leadsync.model import AMBER, FAILURE_OUTCOMES, GREEN, RED, Outcome, Problem
from leadsync.private import open_private
from leadsync.reader.cells import display_text
from leadsync.xlsx_rows import SheetRows, rows_xml, stored

if TYPE_CHECKING:
    import numpy as np

# each outcome's fill, looked up per row
_COLOUR_OF = {o.value: o.colour for o in Outcome}
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\\x00-\x1f]")


def excel_sheet_name(name: str | None) -> str:
    """``name`` as Excel allows a sheet to be called: none of ``[]:*?/`` nor a
    backslash, no ``'`` at either end, at most 31 characters, not blank (a LibreOffice or
    ODS sheet may be named what Excel refuses, and XlsxWriter raises on it)."""
    cleaned = _SHEET_NAME_BAD.sub("_", name or "").strip().strip("'").strip()[:31].strip("'")
    return cleaned or "Leads"


# report.xlsx column widths, in characters: the longest text of the header and of the
# first rows, within these bounds (the problems column may be wider)
_MIN_WIDTH, _MAX_WIDTH, _PROBLEMS_WIDTH = 8, 40, 80
_MEASURED_ROWS = 1_000
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# rows are written column by column, this many at a time (a pyarrow call's cost is paid
# per batch: 650 rows a batch took 3x as long as 8,192); rows given one by one are held
# and batched this many at a time
_BATCH_ROWS = 8_192
_HELD_ROWS = 512
# a style's number in a batch's codes (0: none)
_CODE_OF = {RED: 1, AMBER: 2, GREEN: 3}


@dataclass(frozen=True)
class SheetSpec:
    """What report.xlsx needs to know of the input's sheet (picklable)."""

    headers: tuple[str, ...]
    sheet: str | None
    header_row: int
    attention_rows: int = XLSX_ATTENTION_ROWS  # a large file's report: at most this many
    id_column: int | None = None  # the lead id's column among the headers
    lead_ids: bool = False  # --create: a "leadsync lead id" column (new leads' ids)


@dataclass
class Gate:
    """Which rows report.xlsx takes: every row of a small file; of a large one, the rows
    that need attention, up to a limit (those past it only counted)."""

    full: bool
    limit: int
    taken: int = 0
    beyond: int = 0

    def admits(self, outcome: str) -> bool:
        if self.full:
            return True
        if outcome not in FAILURE_OUTCOMES:
            return False
        if self.taken >= self.limit:
            self.beyond += 1
            return False
        self.taken += 1
        return True

    def take(self, rows: list[int]) -> list[int]:
        """Of a large file's failed ``rows``, those it takes (the rest only counted): the
        rows past the limit are not even read out."""
        if self.full:
            return rows
        kept = rows[: max(self.limit - self.taken, 0)]
        self.taken += len(kept)
        self.beyond += len(rows) - len(kept)
        return kept


class XlsxReport:
    """The user's own rows, invalid cells red with a comment, an outcome column, a summary.

    leadsync's outcome and problems columns come first, then the user's columns. In full
    mode every row sits at the row number it has in the user's file. For a large
    file (``full=False``) only rows that need attention are copied, each with a leading
    ``row`` column that says where it came from. Written with XlsxWriter in constant-memory
    mode (rows go to disk as they come; about 3x faster than openpyxl).
    """

    def __init__(self, path: Path, table: SheetSpec, *, full: bool) -> None:
        import xlsxwriter
        from xlsxwriter.utility import xl_col_to_name

        self.path = path
        self.full = full
        self.width = len(table.headers)
        self.fh = open_private(path, "wb")
        self.book = xlsxwriter.Workbook(
            self.fh,
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        name = excel_sheet_name(table.sheet)
        self.sheet = self.book.add_worksheet(name)
        if self.direct:
            self.sheet._write_optimized_sheet_data = partial(_copy_rows_quickly, self.sheet)
        summary_name = "Summary" if name.casefold() != "summary" else "leadsync summary"
        self.summary_sheet = self.book.add_worksheet(summary_name)
        self.fills = {
            c: self.book.add_format({"bg_color": f"#{c}", "pattern": 1})
            for c in (RED, AMBER, GREEN)
        }
        self.bold = self.book.add_format({"bold": True})
        self.date_format = self.book.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime_format = self.book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        # a coloured date cell still shows a date, not its serial number
        self.dated_fills = {
            (c, timed): self.book.add_format(
                {"bg_color": f"#{c}", "pattern": 1, "num_format": fmt.num_format}
            )
            for c in (RED, AMBER, GREEN)
            for timed, fmt in ((False, self.date_format), (True, self.datetime_format))
        }
        self._colour_of = {fmt: c for c, fmt in self.fills.items()}
        # styles numbered once, in this order, whichever cell uses one first
        for style in (
            self.bold,
            *self.fills.values(),
            self.date_format,
            self.datetime_format,
            *self.dated_fills.values(),
        ):
            style._get_xf_index()
        self.omitted = 0
        self.gate = Gate(full, table.attention_rows)
        self.measured = 0  # rows whose texts the column widths have seen
        self.commented = 0  # rows whose bad cells got a comment
        self.uncommented = 0  # rows past XLSX_COMMENT_ROWS: red cells, no comment
        # every row at its own row number (full) or one after another; columns from A
        self.next_row = table.header_row - 1 if full else 0  # 0-based
        # Excel holds 16,384 columns: the user's columns give way so that leadsync's own
        # (outcome, problems) always fit; the Summary sheet says how many were left out
        room = XLSX_MAX_COLUMNS - (0 if full else 1) - 2
        self.width = min(self.width, max(0, room))
        self.cut_columns = len(table.headers) - self.width
        # leadsync's outcome and problems come first, where a user sees them (and a
        # filter on the outcome makes the sheet a to-do list); then the user's columns
        own = ["leadsync outcome", "leadsync problems"] + (
            ["leadsync lead id"] if table.lead_ids else []
        )
        header: list[Any] = [*own, *table.headers[: self.width]]
        if not full:
            header.insert(0, "row")
        self.lead_ids = table.lead_ids
        self.outcome_column = 0 if full else 1
        self.lead = len(own) + (0 if full else 1)  # leadsync's own columns before the user's
        # the header row frozen, and the columns up to the lead id when it is near the left
        frozen = self.lead
        if table.id_column is not None and table.id_column < 3:
            frozen += table.id_column + 1
        self.sheet.freeze_panes(self.next_row + 1, frozen)
        # widths: the longest of the header and the first rows' texts (set at close)
        self.widths = [len(str(text)) for text in header]
        self.header_index = self.next_row
        self._letters = [xl_col_to_name(j) for j in range(len(header))]
        self._palette = [None, self.fills[RED], self.fills[AMBER], self.fills[GREEN]]
        self._held: list[tuple[Any, ...]] = []  # rows given one by one, not yet batched
        self._waiting: list[SheetRows] = []  # batches not yet written
        self._waiting_rows = 0
        self.direct_rows = 0  # rows written as a batch's XML (the others: XlsxWriter's call)
        self._put(self.next_row, header, {}, bold=True)
        self.next_row += 1

    def _put(
        self, row: int, values: Sequence[Any], styles: Mapping[int, Any], *, bold: bool = False
    ) -> None:
        """One row through XlsxWriter's own call per cell (the header, a row with a text
        too long to write directly, every row of the tests' oracle)."""
        write_string = self.sheet.write_string
        for col, value in enumerate(values):
            style = self.bold if bold else styles.get(col)
            if value.__class__ is str and value:  # most cells: text, straight through
                write_string(row, col, value, style)
            else:
                value = stored(value)
                if isinstance(value, dt.date):
                    style = self._date_style(style, value)
                write_cell(self, row, col, value, style)

    def _comment(self, row: int, col: int, text: str) -> None:
        self.sheet.write_comment(
            row,
            col,
            _ILLEGAL_XLSX.sub("", text),
            {"author": "leadsync", "x_scale": 2, "y_scale": 1.5},
        )

    def _date_style(self, style: Any, value: dt.date) -> Any:
        """The style of a date cell: its own (bold), or a date format, coloured as given."""
        timed = isinstance(value, dt.datetime)
        if style is None:
            return self.datetime_format if timed else self.date_format
        colour = self._colour_of.get(style)
        return style if colour is None else self.dated_fills[(colour, timed)]

    def write(
        self,
        row_number: int,
        cells: Sequence[Any],
        outcome: str,
        problems: Sequence[Problem],
        lead_id: str | None = None,
    ) -> None:
        """One row, if the gate takes it: held, and written with the rows after it."""
        if not self.gate.admits(outcome):
            return
        self._held.append((row_number, cells, outcome, problems, lead_id))
        if len(self._held) >= _HELD_ROWS:
            self._batch_held()

    def _batch_held(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self._queue(SheetRows.of(held, self.width))

    def write_rows(self, rows: SheetRows) -> None:
        """Rows the gate has taken (:meth:`Gate.take`), in the file's order: written
        with the batches after them, :data:`_BATCH_ROWS` at a time."""
        self._batch_held()
        self._queue(rows)

    def _queue(self, rows: SheetRows) -> None:
        self._waiting.append(rows)
        self._waiting_rows += len(rows)
        if self._waiting_rows >= _BATCH_ROWS:
            self._write_waiting()

    def _write_waiting(self) -> None:
        if self._waiting:
            parts, self._waiting, self._waiting_rows = self._waiting, [], 0
            self._write_batch(SheetRows.concat(parts, self.width))

    def _write_batch(self, rows: SheetRows) -> None:
        """A batch of rows, column by column: leadsync's outcome and problems, the user's
        cells, bad cells red (with a comment, on the first rows)."""
        import numpy as np

        placed, index = [], []
        next_row = self.next_row
        for k, number in enumerate(rows.numbers):
            at = number - 1 if self.full else next_row
            if at > XLSX_MAX_ROWS or at < next_row:
                self.omitted += 1
                continue
            placed.append(k)
            index.append(at)
            next_row = at + 1
        if not placed:
            return
        if len(placed) < len(rows):
            rows = rows.take(placed)
        self.next_row = next_row
        n, width, offset = len(placed), self.width, self.lead
        summaries: list[str | None] = []
        comments: dict[int, dict[int, str]] = {}  # a row -> its commented columns' texts
        red: dict[int, np.ndarray] = {}  # a user's column -> its cells' codes
        for k, problems in enumerate(rows.problems):
            summary = "; ".join((f"{p.column}: " if p.column else "") + p.message for p in problems)
            summaries.append(summary or None)
            by_column: dict[int, list[str]] = {}
            for p in problems:
                if p.column_index is not None and p.column_index < width:
                    by_column.setdefault(p.column_index, []).append(p.message)
            for j in by_column:
                codes = red.get(j)
                if codes is None:
                    codes = red[j] = np.zeros(n, dtype=np.int8)
                codes[k] = _CODE_OF[RED]
            if by_column and self.commented >= XLSX_COMMENT_ROWS:
                self.uncommented += 1
            elif by_column:
                self.commented += 1
                comments[k] = {j + offset: "\n".join(m) for j, m in by_column.items()}
        outcome_codes = np.array(
            [_CODE_OF.get(_COLOUR_OF[o] or "", 0) for o in rows.outcomes], dtype=np.int8
        )
        columns: list[Any] = [] if self.full else [list(rows.numbers)]
        columns += [list(rows.outcomes), summaries]
        if self.lead_ids:
            columns.append(list(rows.lead_ids or [None] * n))
        users = list(rows.columns[:width])
        users += [[None] * n for _ in range(width - len(users))]
        codes_of: list[np.ndarray | None] = [None] * len(columns)
        codes_of[self.outcome_column] = outcome_codes
        codes_of += [red.get(j) for j in range(width)]
        columns += users
        self._measure(columns, n)
        if self.direct:
            self._write_xml(np.array(index, dtype=np.int64), columns, codes_of, comments)
        else:
            for k in range(n):
                self._put_one(index[k], columns, codes_of, comments.get(k, {}), k)

    def _put_one(
        self,
        row: int,
        columns: Sequence[Any],
        codes: Sequence[Any],
        comments: Mapping[int, str],
        k: int,
    ) -> None:
        """Row ``k`` of a batch through XlsxWriter's own call."""
        values = [c[k].as_py() if not isinstance(c, list) else c[k] for c in columns]
        palette = self._palette
        styles = {j: palette[c[k]] for j, c in enumerate(codes) if c is not None and c[k]}
        self._put(row, values, styles)
        for col, text in comments.items():
            self._comment(row, col, text)

    # False in the tests' oracle: every row through XlsxWriter's own call per cell
    direct = True

    def _write_xml(
        self,
        index: np.ndarray,
        columns: Sequence[Any],
        codes: Sequence[Any],
        comments: Mapping[int, Mapping[int, str]],
    ) -> None:
        """A batch's rows as their XML, in one write between the rows XlsxWriter writes
        itself; their comments and the sheet's extent recorded as XlsxWriter records them."""
        from leadsync.columnar import string_buffers

        sheet = self.sheet
        xml = rows_xml(sheet, self._letters, index, columns, codes, self._palette, self._date_style)
        data, offsets = string_buffers(xml.rows)
        start, n = 0, len(index)
        for stop in [*xml.by_xlsxwriter, n]:
            if stop > start:
                first, last = int(index[start]), int(index[stop - 1])
                sheet._write_single_row(first)  # XlsxWriter's row in hand goes out first
                sheet._check_dimensions(first, 0)
                sheet._check_dimensions(last, xml.last_column)
                sheet.fh.flush()
                sheet.fh.buffer.write(data[offsets[start] : offsets[stop]])
                for k in range(start, stop):
                    for col, text in comments.get(k, {}).items():
                        self._comment(int(index[k]), col, text)
                sheet.previous_row = last + 1  # XlsxWriter has nothing of these rows to write
                self.direct_rows += stop - start
            if stop < n:
                self._put_one(int(index[stop]), columns, codes, comments.get(stop, {}), stop)
            start = stop + 1

    def _measure(self, columns: Sequence[Any], n: int) -> None:
        """The column widths: the longest texts of the first rows."""
        import pyarrow as pa
        import pyarrow.compute as pc

        m = min(n, _MEASURED_ROWS - self.measured)
        if m <= 0:
            return
        self.measured += m
        widths = self.widths
        for j, column in enumerate(columns[: len(widths)]):
            if isinstance(column, pa.Array):
                size = pc.max(pc.utf8_length(column.slice(0, m))).as_py() or 0
            else:
                size = max(
                    (
                        len(v if v.__class__ is str else display_text(v))
                        for v in column[:m]
                        if v is not None
                    ),
                    default=0,
                )
            if size > widths[j]:
                widths[j] = size

    def close(self, summary: Mapping[str, Any]) -> None:
        self._batch_held()
        self._write_waiting()
        lines: list[tuple[Any, ...]] = [("leadsync report",)]
        for key in ("command", "run_id", "started_at", "finished_at", "rows"):
            if key in summary:
                lines.append((key, summary[key]))
        file = summary.get("file", {})
        for key in ("name", "sheet", "sha256"):
            if file.get(key):
                lines.append((f"file {key}", file[key]))
        lines += [(), ("outcome", "rows")]
        lines += [(o, n) for o, n in summary.get("outcomes", {}).items() if n]
        codes = summary.get("problems_by_code", {})
        if codes:
            lines += [(), ("problem", "count"), *codes.items()]
        unmapped = summary.get("unmapped_columns", [])
        if unmapped:
            lines += [(), ("columns not sent (unmapped)",), *((h,) for h in unmapped)]
        if not self.full:
            lines += [
                (),
                (
                    "This file is large: the first sheet holds only the rows that need "
                    "attention; every row is in the CSV reports.",
                ),
            ]
        if self.cut_columns:
            lines += [
                (),
                (
                    f"Excel holds {XLSX_MAX_COLUMNS:,} columns: the first sheet shows the "
                    f"first {self.width:,} of this file's and leadsync's outcome and problems; "
                    f"{self.cut_columns:,} more columns are in the CSV reports only.",
                ),
            ]
        if self.uncommented:
            lines += [
                (),
                (
                    f"Bad cells are red on every row; those of the first {XLSX_COMMENT_ROWS:,} "
                    f"rows also have a comment ({self.uncommented:,} more rows: see their "
                    "'leadsync problems' column).",
                ),
            ]
        if self.gate.beyond:
            lines += [
                (),
                (
                    f"Only the first {self.gate.limit:,} rows that need attention are on "
                    f"the first sheet; {self.gate.beyond:,} more are in failures.csv.",
                ),
            ]
        if self.omitted:
            lines += [
                (),
                (f"{self.omitted} rows beyond Excel's row limit are in the CSV reports only",),
            ]
        problems_column = self.outcome_column + 1
        for j, size in enumerate(self.widths):
            cap = _PROBLEMS_WIDTH if j == problems_column else _MAX_WIDTH
            width = min(max(size + 2, _MIN_WIDTH), cap)
            self.sheet.set_column(j, j, width)
        # a filter on every column of the header: the sheet works as a to-do list
        last = max(self.next_row - 1, self.header_index)
        self.sheet.autofilter(self.header_index, 0, last, len(self.widths) - 1)
        headings = {0} | {i + 1 for i, line in enumerate(lines) if line == ()}
        for i, line in enumerate(lines):
            for j, value in enumerate(line):
                style = self.bold if i in headings and value is not None else None
                write_cell(self, i, j, value, style, sheet=self.summary_sheet)
        _close_quickly(self.book)
        self.fh.close()


# While _close_quickly runs: the sheet files whose rows go into the zip from their own
# file (sheet XML file -> (the byte where the rows go, the rows' file))
_SPLICES: dict[str, tuple[int, str]] | None = None


def _copy_rows_quickly(sheet: Any) -> None:
    """XlsxWriter's ``_write_optimized_sheet_data``, the rows' file taken as bytes rather
    than as text decoded and encoded again (0.35 s -> 0.05 s for 32,000 rows, time a run
    waits after its last row); under :func:`_close_quickly` not copied at all: the zip
    entry is read from the sheet's file and the rows' file in turn (0.14 s less for the
    32,000 rows' 42 MB)."""
    import shutil

    if sheet.dim_rowmin is None or not hasattr(sheet.fh, "buffer"):
        type(sheet)._write_optimized_sheet_data(sheet)  # nothing to copy, or not a file
        return
    sheet._xml_start_tag("sheetData")
    sheet.row_data_fh.close()
    sheet.fh.flush()
    if _SPLICES is not None:
        _SPLICES[os.path.abspath(sheet.fh.name)] = (sheet.fh.buffer.tell(), sheet.row_data_filename)
    else:
        with open(sheet.row_data_filename, "rb") as rows:
            shutil.copyfileobj(rows, sheet.fh.buffer, 1 << 20)
        os.unlink(sheet.row_data_filename)
    sheet._xml_end_tag("sheetData")


def _splicing_zip(level: int) -> Any:
    """A ``zipfile.ZipFile`` at zlib ``level`` that writes a spliced sheet (see
    :func:`_copy_rows_quickly`) as its file's bytes up to the rows, the rows' file, then
    the rest: the very bytes the copy would have made."""
    import shutil
    import zipfile

    class SplicingZip(zipfile.ZipFile):
        def write(self, filename: Any, arcname: Any = None, *args: Any, **kwargs: Any) -> None:
            found = (_SPLICES or {}).pop(os.path.abspath(filename), None)
            if found is None:
                super().write(filename, arcname, *args, **kwargs)
                return
            at, rows = found
            info = zipfile.ZipInfo.from_file(filename, arcname)
            info.compress_type = self.compression
            info._compresslevel = level  # type: ignore[attr-defined]  # as ZipFile.write sets
            info.file_size = os.path.getsize(filename) + os.path.getsize(rows)
            with (
                open(filename, "rb") as sheet,
                open(rows, "rb") as body,
                self.open(info, "w") as out,
            ):
                out.write(sheet.read(at))
                shutil.copyfileobj(body, out, 1 << 20)
                shutil.copyfileobj(sheet, out, 1 << 20)
            os.unlink(rows)

    return partial(SplicingZip, compresslevel=level)


def _close_quickly(book: Any) -> None:
    """Close an XlsxWriter workbook, deflating its parts at zlib level 1 rather than 6:
    the sheet of a large run's rows is zipped after its last row, so this is time the run
    waits (0.49 s -> 0.32 s for 32,000 rows, the file ~25% larger), and the rows' file
    spliced into the sheet's entry rather than copied into its file first. XlsxWriter
    has no option for either: the ``ZipFile`` it opens is replaced for this call only."""
    import zipfile

    import xlsxwriter.workbook as workbook

    global _SPLICES
    opened = workbook.ZipFile
    if opened is zipfile.ZipFile:  # as XlsxWriter 3 has it; else left as it is
        workbook.ZipFile = _splicing_zip(1)
        _SPLICES = {}
    try:
        book.close()
    finally:
        workbook.ZipFile = opened
        leftover, _SPLICES = _SPLICES or {}, None
        for _, rows in leftover.values():  # a close that failed midway: no file left behind
            with contextlib.suppress(OSError):
                os.unlink(rows)


class CellTarget(Protocol):
    """Where :func:`write_cell` writes: a worksheet and its date formats."""

    sheet: Any
    date_format: Any
    datetime_format: Any


def write_cell(
    report: CellTarget, row: int, col: int, value: Any, style: Any, sheet: Any = None
) -> None:
    """One cell, typed as it was read (text stays text, even if it starts with '=')."""
    sheet = sheet if sheet is not None else report.sheet
    value = stored(value)
    if value is None or (isinstance(value, str) and not value):
        if style is not None:
            sheet.write_blank(row, col, None, style)
    elif isinstance(value, str):
        sheet.write_string(row, col, value, style)  # control characters escaped by XlsxWriter
    elif isinstance(value, bool):
        sheet.write_boolean(row, col, value, style)
    elif isinstance(value, (int, float)):
        sheet.write_number(row, col, value, style)
    elif isinstance(value, dt.datetime):
        sheet.write_datetime(row, col, value.replace(tzinfo=None), style or report.datetime_format)
    elif isinstance(value, dt.date):
        sheet.write_datetime(row, col, value, style or report.date_format)
    else:  # a time, a duration: as the reports' CSVs show it
        sheet.write_string(row, col, display_text(value), style)
