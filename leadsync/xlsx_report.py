"""report.xlsx: the user's own rows with invalid cells red and commented, an outcome
column, a problems column and a Summary sheet (spec §6), written with XlsxWriter in
constant-memory mode. :class:`~leadsync.report.ReportWriter` runs it in-process for a
small file and in a process of its own for a large one."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from leadsync.defaults import (
    XLSX_ATTENTION_ROWS,
    XLSX_COMMENT_ROWS,
    XLSX_MAX_COLUMNS,
    XLSX_MAX_ROWS,
)
from leadsync.model import AMBER, FAILURE_OUTCOMES, GREEN, RED, Outcome, Problem
from leadsync.private import open_private
from leadsync.reader.cells import display_text

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
# a text XlsxWriter changes as it writes it: XML's & < >, control characters and its
# _xHHHH_ escapes, U+FFFE/U+FFFF, spaces at either end (kept with xml:space) ...
_XML_CHARS = r"[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]"
_XML_ESCAPES = r"_x[0-9a-fA-F]{4}_"
_XML_CARE = re.compile(f"{_XML_CHARS}|{_XML_ESCAPES}" + r"|^\s|\s$")
# ... and in a row's texts joined by DEL (which neither looks for), in three looks that
# are each quicker than one regular expression with all of it (2.5 us a row, not 4.4)
_XML_ROW_CHARS = re.compile(_XML_CHARS)
_XML_ESCAPE = re.compile(_XML_ESCAPES)
_XML_ROW_EDGES = re.compile(r"\x7f\s|\s\x7f")


def _row_needs_care(texts: str) -> bool:
    """Whether XlsxWriter would change one of a row's texts (joined by DEL)."""
    return bool(
        _XML_ROW_CHARS.search(texts)
        or ("_x" in texts and _XML_ESCAPE.search(texts))
        or texts[:1].isspace()
        or texts[-1:].isspace()
        or _XML_ROW_EDGES.search(texts)
    )


# texts longer than this may pass Excel's 32,767 UTF-16 units: XlsxWriter cuts them
_DIRECT_MAX = 16_383


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

    def room(self, rows: list[int]) -> list[int]:
        """Of a large file's failed ``rows``, those :meth:`admits` will still take (the
        rest only counted here): the rows past the limit are not even read out."""
        if self.full:
            return rows
        kept = rows[: max(self.limit - self.taken, 0)]
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
        from xlsxwriter.utility import _preserve_whitespace, xl_col_to_name

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
        self._attributes: dict[Any, str] = {}  # a style -> its cells' ' s="N"'
        self._preserve = _preserve_whitespace
        self._put(self.next_row, header, bold=True)
        self.next_row += 1

    def _put(
        self,
        row: int,
        values: Sequence[Any],
        *,
        bold: bool = False,
        fills: Mapping[int, str] | None = None,
        comments: Mapping[int, str] | None = None,
    ) -> None:
        sheet = self.sheet
        if self._put_direct(row, values, fills, comments, bold):
            return
        write_string = sheet.write_string
        for col, value in enumerate(values):
            fill = fills.get(col) if fills else None
            style = self.bold if bold else (self.fills[fill] if fill else None)
            if comments and col in comments:
                self._comment(row, col, comments[col])
            if value.__class__ is str and value:  # most cells: text, straight through
                write_string(row, col, value, style)
            else:
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

    def _put_direct(
        self,
        row: int,
        values: Sequence[Any],
        fills: Mapping[int, str] | None,
        comments: Mapping[int, str] | None,
        bold: bool = False,
    ) -> bool:
        """Write a row as its XML, the very bytes XlsxWriter's call per cell writes
        (constant-memory mode; the tests hold them equal), ~5x faster; False, with
        nothing written, for a text so long that XlsxWriter may cut it to Excel's limit.
        A text that looks like XlsxWriter's rich-string markup stays the user's text."""
        sheet = self.sheet
        number = str(row + 1)
        parts = [f'<row r="{number}">']
        letters = self._letters
        style_of = {col: self.bold for col in range(len(values))} if bold else {}
        if fills:
            style_of.update((col, self.fills[fill]) for col, fill in fills.items())
        attribute = self._attributes
        styles = {}
        for col, style in style_of.items():
            text = attribute.get(style)
            if text is None:  # a style's index is fixed once asked for
                text = attribute[style] = f' s="{style._get_xf_index()}"'
            styles[col] = text
        # one look at the row's texts: most rows hold nothing XlsxWriter would change
        texts = "\x7f".join([v for v in values if v.__class__ is str])
        plain = len(texts) <= _DIRECT_MAX and not _row_needs_care(texts)
        first = last = -1
        append, style_text = parts.append, styles.get
        for col, value in enumerate(values):
            cell: str | None
            if plain and value and value.__class__ is str:
                cell = (
                    f'<c r="{letters[col]}{number}"{style_text(col, "")} t="inlineStr">'
                    f"<is><t>{value}</t></is></c>"
                )
            elif (value is None or value == "") and col not in styles:
                continue  # a blank cell without a style: not written
            else:
                cell = self._cell(f'<c r="{letters[col]}{number}"', value, style_of.get(col))
                if cell is None:
                    return False
                if not cell:
                    continue
            append(cell)
            if first < 0:
                first = col
            last = col
        if last < 0:
            return False
        # XlsxWriter's row in hand (the row before) goes out first; this row's comments
        # and extent are recorded as XlsxWriter records them
        sheet._write_single_row(row)
        for col, text in (comments or {}).items():
            self._comment(row, col, text)
        sheet._check_dimensions(row, first)
        sheet._check_dimensions(row, last)
        parts.append("</row>")
        sheet.fh.write("".join(parts))
        # XlsxWriter has nothing of this row to write when it moves on
        sheet.previous_row = row + 1
        return True

    def _cell(self, ref: str, value: Any, style: Any) -> str | None:
        """One cell's XML (``ref``: its opening, ``<c r="B7"``), typed as
        :func:`write_cell` types it; "" for a blank cell without a style (not written),
        None for a text too long to write here."""
        if isinstance(value, dt.date):
            if isinstance(value, dt.datetime):
                value = value.replace(tzinfo=None)
            style = self._date_style(style, value)
        at = ref if style is None else f'{ref} s="{style._get_xf_index()}"'
        if isinstance(value, bool):
            return f'{at} t="b"><v>{int(value)}</v></c>'
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                return f"{at}><v>{value:.16G}</v></c>"
            value = str(value)  # XlsxWriter refuses NaN and infinities: as text
        elif isinstance(value, dt.date):
            return f"{at}><v>{self.sheet._convert_date_time(value):.16G}</v></c>"
        elif value is not None and not isinstance(value, str):
            value = display_text(value)
        if not value:
            return f"{at}/>" if style is not None else ""
        if len(value) > _DIRECT_MAX:
            return None
        sheet, space = self.sheet, ""
        if _XML_CARE.search(value):  # as XlsxWriter's _write_cell does it
            value = sheet._escape_control_characters(value)
            if self._preserve(value):
                space = ' xml:space="preserve"'
            value = sheet._escape_data(value)
        return f'{at} t="inlineStr"><is><t{space}>{value}</t></is></c>'

    def write(
        self,
        row_number: int,
        cells: Sequence[Any],
        outcome: str,
        problems: Sequence[Problem],
        lead_id: str | None = None,
    ) -> None:
        if not self.gate.admits(outcome):
            return
        index = row_number - 1 if self.full else self.next_row
        if index > XLSX_MAX_ROWS or index < self.next_row:
            self.omitted += 1
            return
        by_column: dict[int, list[str]] = {}
        for p in problems:
            if p.column_index is not None and p.column_index < self.width:
                by_column.setdefault(p.column_index, []).append(p.message)
        offset = self.lead
        summary = "; ".join((f"{p.column}: " if p.column else "") + p.message for p in problems)
        values: list[Any] = [] if self.full else [row_number]
        values += [outcome, summary or None]
        if self.lead_ids:
            values.append(lead_id)
        values.extend(cells[: self.width])
        if len(cells) < self.width:  # a short row: blanks to the last column
            values.extend([None] * (self.width - len(cells)))
        fills = {j + offset: RED for j in by_column}
        colour = _COLOUR_OF[outcome]
        if colour:
            fills[self.outcome_column] = colour
        comments = {j + offset: "\n".join(m) for j, m in by_column.items()}
        if comments and self.commented >= XLSX_COMMENT_ROWS:
            comments = {}
            self.uncommented += 1
        elif comments:
            self.commented += 1
        self._put(index, values, fills=fills, comments=comments)
        self.next_row = index + 1
        if self.measured < _MEASURED_ROWS:
            self.measured += 1
            widths = self.widths
            for j, value in enumerate(values):
                if value is not None and j < len(widths):
                    size = len(value) if value.__class__ is str else len(display_text(value))
                    if size > widths[j]:
                        widths[j] = size

    def close(self, summary: Mapping[str, Any]) -> None:
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


def _close_quickly(book: Any) -> None:
    """Close an XlsxWriter workbook, deflating its parts at zlib level 1 rather than 6:
    the sheet of a large run's rows is zipped after its last row, so this is time the run
    waits (0.49 s -> 0.32 s for 32,000 rows, the file ~25% larger). XlsxWriter has no
    option for it: the ``ZipFile`` it opens is given the level for this call only."""
    import functools
    import zipfile

    import xlsxwriter.workbook as workbook

    opened = workbook.ZipFile
    if opened is zipfile.ZipFile:  # as XlsxWriter 3 has it; else left as it is
        workbook.ZipFile = functools.partial(zipfile.ZipFile, compresslevel=1)
    try:
        book.close()
    finally:
        workbook.ZipFile = opened


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
