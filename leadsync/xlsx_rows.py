"""report.xlsx's rows as sheet XML, built column by column.

A report's rows reach the workbook in batches (:class:`SheetRows`: a chunk's rows that
need attention, or every row of a small file). Each column's cells become their
``<c>`` elements in a few pyarrow operations, the columns are joined into ``<row>``
elements, and the batch is written to XlsxWriter's row file in one go: the very bytes
XlsxWriter's own call per cell writes in constant-memory mode (the tests hold them
equal). Python looks at a cell only when it is not plain text: a typed cell (a number,
a date, a flag), or a text XlsxWriter changes as it writes it (XML's ``& < >``, control
characters, ``_xHHHH_``, spaces at either end): :func:`cell_xml` writes those, as
XlsxWriter's ``_write_cell`` does. A text so long that XlsxWriter may cut it to Excel's
limit is left to XlsxWriter's own call, with the rest of its row.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leadsync.columnar import PY_SPACE
from leadsync.model import Problem
from leadsync.reader.cells import Shown, display_text

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# a text XlsxWriter changes as it writes it (such a cell is written by cell_xml, with
# XlsxWriter's own escapes): XML's & < >, control characters and its _xHHHH_ escapes,
# U+FFFE/U+FFFF, spaces at either end (kept with xml:space); RE2, Python's \s spelled out
_XML_CARE_RE2 = (
    r"[&<>\x00-\x08\x0b-\x1f\x{fffe}\x{ffff}]|_x[0-9a-fA-F]{4}_" + f"|^{PY_SPACE}|{PY_SPACE}$"
)
# texts longer than this may pass Excel's 32,767 UTF-16 units: XlsxWriter cuts them
DIRECT_MAX = 16_383


@dataclass(frozen=True)
class SheetRows:
    """Rows for report.xlsx, column by column (picklable: it may go to another process)."""

    numbers: Sequence[int]  # each row's number in the user's file
    outcomes: Sequence[str]
    problems: Sequence[Sequence[Problem]]
    columns: Sequence[Any]  # the user's cells, per column: a pyarrow string array or a list
    lead_ids: Sequence[str | None] | None = None  # --create: the new leads' ids

    def __len__(self) -> int:
        return len(self.numbers)

    def take(self, keep: Sequence[int]) -> SheetRows:
        """The rows at ``keep``, in that order."""
        import pyarrow as pa

        indices = pa.array(keep, pa.int64())
        return SheetRows(
            [self.numbers[k] for k in keep],
            [self.outcomes[k] for k in keep],
            [self.problems[k] for k in keep],
            [
                c.take(indices) if isinstance(c, pa.Array) else [c[k] for k in keep]
                for c in self.columns
            ],
            None if self.lead_ids is None else [self.lead_ids[k] for k in keep],
        )

    @classmethod
    def concat(cls, parts: Sequence[SheetRows], width: int) -> SheetRows:
        """``parts``, one after another, as one batch of ``width`` columns."""
        import pyarrow as pa

        if len(parts) == 1 and len(parts[0].columns) == width:
            return parts[0]
        columns: list[Any] = []
        for j in range(width):
            cells = [p.columns[j] if j < len(p.columns) else [None] * len(p) for p in parts]
            if all(isinstance(c, pa.Array) for c in cells):
                columns.append(pa.concat_arrays(cells))
            else:
                columns.append(
                    [v for c in cells for v in (c.to_pylist() if isinstance(c, pa.Array) else c)]
                )
        leads = None
        if any(p.lead_ids is not None for p in parts):
            leads = [v for p in parts for v in (p.lead_ids or [None] * len(p))]
        return cls(
            [v for p in parts for v in p.numbers],
            [v for p in parts for v in p.outcomes],
            [v for p in parts for v in p.problems],
            columns,
            leads,
        )

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, ...]], width: int) -> SheetRows:
        """Rows given one by one, ``(number, cells, outcome, problems, lead_id)``; a short
        row's missing cells are blank."""
        columns = [[r[1][j] if j < len(r[1]) else None for r in rows] for j in range(width)]
        return cls(
            [r[0] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            columns,
            [r[4] for r in rows],
        )


def stored(value: Any) -> Any:
    """A cell as report.xlsx stores it: a date cell shown by its format stays a date (its
    format is lost, its value kept); any other cell as it is."""
    if value.__class__ is Shown and isinstance(value.value, dt.date):
        return value.value
    return value


def cell_xml(
    sheet: Any, ref: str, value: Any, style: Any, date_style: Callable[..., Any]
) -> str | None:
    """One cell's XML (``ref``: its opening, ``<c r="B7"``) as XlsxWriter writes it,
    typed as :func:`~leadsync.xlsx_report.write_cell` types it; "" for a blank cell
    without a style (not written), None for a text too long to write here.
    ``date_style(style, value)``: the style a date cell takes."""
    value = stored(value)
    if isinstance(value, dt.date):
        if isinstance(value, dt.datetime):
            value = value.replace(tzinfo=None)
        style = date_style(style, value)
    at = ref if style is None else f'{ref} s="{style._get_xf_index()}"'
    if isinstance(value, bool):
        return f'{at} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, float)):
        if math.isfinite(value):
            return f"{at}><v>{value:.16G}</v></c>"
        value = str(value)  # XlsxWriter refuses NaN and infinities: as text
    elif isinstance(value, dt.date):
        return f"{at}><v>{sheet._convert_date_time(value):.16G}</v></c>"
    elif value is not None and not isinstance(value, str):
        value = display_text(value)
    if not value:
        return f"{at}/>" if style is not None else ""
    if len(value) > DIRECT_MAX:
        return None
    from xlsxwriter.utility import _preserve_whitespace

    # as XlsxWriter's _write_cell does it (each escape leaves a plain text as it is)
    value = sheet._escape_control_characters(value)
    space = ' xml:space="preserve"' if _preserve_whitespace(value) else ""
    value = sheet._escape_data(value)
    return f'{at} t="inlineStr"><is><t{space}>{value}</t></is></c>'


@dataclass
class RowsXml:
    """A batch's ``<row>`` elements (one string array), the rows XlsxWriter must write
    itself (a text too long here), and the last column any row writes."""

    rows: pa.Array
    by_xlsxwriter: list[int]
    last_column: int


def rows_xml(
    sheet: Any,
    letters: Sequence[str],
    index: np.ndarray,
    columns: Sequence[Any],
    codes: Sequence[np.ndarray | None],
    palette: Sequence[Any],
    date_style: Callable[..., Any],
) -> RowsXml:
    """The XML of rows at sheet rows ``index`` (0-based): ``columns[j]`` the cells of
    column ``j`` (a pyarrow string array, or a list of any cells), ``codes[j]`` each
    cell's style there (an index into ``palette``, whose entry 0 is no style), or None
    for a column without styles."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = pa.array(index + 1, pa.int64()).cast(pa.string())
    attributes = pa.array(
        ["" if s is None else f' s="{s._get_xf_index()}"' for s in palette], pa.string()
    )
    parts: list[Any] = []
    by_xlsxwriter: set[int] = set()
    last = 0
    for j, values in enumerate(columns):
        style_codes = codes[j]
        cells, refused, written = _column_xml(
            sheet, letters[j], numbers, index, values, style_codes, attributes, palette, date_style
        )
        by_xlsxwriter.update(refused)
        if written:
            last = j
        parts.append(cells)
    rows = pc.binary_join_element_wise('<row r="', numbers, '">', *parts, "</row>", "")
    return RowsXml(rows, sorted(by_xlsxwriter), last)


def _column_xml(
    sheet: Any,
    letter: str,
    numbers: pa.Array,
    index: np.ndarray,
    values: Any,
    codes: np.ndarray | None,
    attributes: pa.Array,
    palette: Sequence[Any],
    date_style: Callable[..., Any],
) -> tuple[pa.Array, list[int], bool]:
    """One column's cells: their XML ("" where nothing is written), the rows whose cell
    only XlsxWriter may write, and whether any cell is written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    typed: list[int] = []
    if isinstance(values, pa.Array):
        texts = values
    else:  # a workbook's typed cells (and shown numbers and dates): each its own XML
        typed = [k for k, v in enumerate(values) if v is not None and v.__class__ is not str]
        if typed:
            texts = pa.array([v if v.__class__ is str else None for v in values], pa.string())
        else:
            texts = pa.array(values, pa.string())
    if texts.null_count:
        texts = texts.fill_null("")
    attribute: Any = "" if codes is None else pc.take(attributes, pa.array(codes))
    opening = ('<c r="', letter, numbers, '"', attribute)
    size = pc.binary_length(texts)
    filled = pc.greater(size, 0)
    xml = pc.binary_join_element_wise(
        *opening, ' t="inlineStr"><is><t>', texts, "</t></is></c>", ""
    )
    styled = None if codes is None else np.asarray(codes) > 0
    if styled is not None and styled.any():
        blank = pc.if_else(pa.array(styled), pc.binary_join_element_wise(*opening, "/>", ""), "")
        xml = pc.if_else(filled, xml, blank)
    else:
        xml = pc.if_else(filled, xml, "")
    care = pc.or_(pc.match_substring_regex(texts, _XML_CARE_RE2), pc.greater(size, DIRECT_MAX))
    own = sorted({*typed, *np.flatnonzero(care.to_numpy(zero_copy_only=False)).tolist()})
    refused: list[int] = []
    if own:
        replacements = []
        for k in own:
            value = values[k] if not isinstance(values, pa.Array) else texts[k].as_py()
            style = palette[codes[k]] if codes is not None else None
            cell = cell_xml(sheet, f'<c r="{letter}{index[k] + 1}"', value, style, date_style)
            if cell is None:
                refused.append(k)
                cell = ""
            replacements.append(cell)
        mask = np.zeros(len(texts), dtype=bool)
        mask[own] = True
        xml = pc.replace_with_mask(xml, pa.array(mask), pa.array(replacements, pa.string()))
    written = bool(pc.any(pc.greater(pc.binary_length(xml), 0)).as_py())
    return xml, refused, written
