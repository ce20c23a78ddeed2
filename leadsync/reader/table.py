"""The opened input file (:class:`Table`) and what each kind of file provides to it
(:class:`Source`): a new format is one module with a ``Source`` and an opener."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadsync.reader.cells import (
    Chunk,
    Shown,
    all_text,
    display_text,
    normalise_cell,
    present,
    whole_floats,
)

if TYPE_CHECKING:
    import pyarrow as pa


class Source:
    """What one kind of file gives its :class:`Table`: its data rows one by one (the
    reference every faster reader is tested against), and, where it has them, faster
    ways to read chunks and single columns."""

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        """``(spreadsheet row number, cells)`` for every data row."""
        return iter(())

    def fast_chunks(self, table: Table, size: int) -> Iterator[Chunk]:
        """The data rows in chunks, the fastest way this kind of file allows."""
        return table.python_chunks(self.rows(), size)

    def column_text(self, table: Table, index: int, size: int) -> Iterator[pa.Array]:
        """One column's cells as the user sees them, in arrays of up to ``size``."""
        return text_blocks(table.column(index), size)

    pieced = False  # read in pieces, each there as soon as it is parsed (see parts)

    def parts(self, once: bool = False) -> Iterator[Source]:
        """The file as it is read: a source for each piece (one: the whole file). A
        piece keeps its rows once read (for its next pass) until :meth:`release`;
        ``once``: the file is read this once (each piece let go with its part)."""
        yield self

    def release(self) -> None:
        """Let go of the rows kept for another pass (they are read again if asked)."""

    @property
    def read_through(self) -> bool:
        """Whether every piece is read (parts() no longer waits)."""
        return True

    def close(self) -> None:
        """Stop reading ahead (the rows will not be read)."""


@dataclass
class Table:
    """An opened input file: its headers and a way to read its rows in chunks."""

    path: Path
    format: str  # "csv" or "excel"
    headers: tuple[str, ...]
    header_row: int
    first_column: int = 0  # 0-based column of the first header (workbooks)
    sheet: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    notices: list[str] = field(default_factory=list)
    date1904: bool = False  # a workbook saved in the 1904 date system (Excel for Mac)
    source: Source = field(default_factory=lambda: Source())  # set by the file kind's opener

    def chunks(self, size: int, *, fast: bool = True) -> Iterator[Chunk]:
        """Yield the data rows in chunks of at most ``size`` rows.

        ``fast`` reads a UTF-8 CSV with pyarrow and a workbook in blocks;
        ``fast=False`` always goes row by row (the reference the fast readers are
        tested against).
        """
        if fast:
            yield from self.source.fast_chunks(self, size)
        else:
            yield from self.python_chunks(self.source.rows(), size)

    @property
    def pieced(self) -> bool:
        """Whether the file is read in pieces (:meth:`parts`) as its rows are checked."""
        return self.source.pieced

    def parts(self, once: bool = False) -> Iterator[Source]:
        """The file's pieces, each a source of its rows, each as soon as it is read
        (``once``: each let go with its part; the file cannot be read again)."""
        return self.source.parts(once)

    @property
    def read_through(self) -> bool:
        """Whether every piece of the file is read (iterating them no longer waits)."""
        return self.source.read_through

    def close(self) -> None:
        """Stop reading ahead: the rest of the file will not be read."""
        self.source.close()

    def python_chunks(self, rows: Iterator[tuple[int, list[Any]]], size: int) -> Iterator[Chunk]:
        """Group ``(row_number, cells)`` into chunks: pad short rows, count spilled cells."""
        width = len(self.headers)
        numbers: list[int] = []
        block: list[list[Any]] = []
        extra: dict[int, int] = {}
        for number, cells in rows:
            if len(cells) != width:
                if len(cells) > width:
                    spill = sum(1 for c in cells[width:] if present(c))
                    if spill:
                        extra[len(block)] = spill
                    cells = cells[:width]
                else:
                    cells = list(cells) + [""] * (width - len(cells))
            numbers.append(number)
            block.append(cells)
            if len(block) >= size:
                yield self.chunk_of(block, numbers, extra)
                numbers, block, extra = [], [], {}
        if block:
            yield self.chunk_of(block, numbers, extra)

    def chunk_of(
        self,
        block: list[list[Any]],
        numbers: Sequence[int],
        extra: dict[int, int],
        patch: Callable[[list[list[Any]]], None] | None = None,
    ) -> Chunk:
        """The rows of ``block`` as a chunk, column by column (``patch``: applied to the
        columns as the file's reader gave them)."""
        columns = [list(c) for c in zip(*block, strict=True)] if block and block[0] else []
        if not columns:
            columns = [[] for _ in self.headers]
        if patch is not None:
            patch(columns)
        if self.format == "excel":
            # calamine gives every number as a float: 375.0 -> 375, per column, only
            # where a float is present
            columns = [
                c if all_text(c) or float not in set(map(type, c)) else whole_floats(c)
                for c in columns
            ]
        return Chunk(columns, numbers, extra, self.date1904)

    def first_rows(self, n: int) -> list[tuple[int, list[Any]]]:
        """The first ``n`` data rows as ``(row_number, cells)`` (a peek, row by row)."""
        return list(itertools.islice(self.source.rows(), n))

    def column(self, index: int) -> Iterator[Any]:
        """Yield one column's cells, row by row (a cheap pass, e.g. to find duplicate ids)."""
        for _, cells in self.source.rows():
            yield normalise_cell(cells[index]) if index < len(cells) else ""

    def column_text(self, index: int, size: int) -> Iterator[pa.Array]:
        """One column's cells as the user sees them, in pyarrow arrays of up to ``size``
        (the cheapest full pass: a UTF-8 CSV's other columns are parsed, not kept)."""
        yield from self.source.column_text(self, index, size)


def text_blocks(cells: Iterator[Any], size: int) -> Iterator[pa.Array]:
    """Cells as the user sees them, in pyarrow string arrays of up to ``size``; a
    formatted number as its number (this is the lead id column's pass: ``001001`` shown
    is lead 1001, as the rows' own pass reads it)."""
    while block := list(itertools.islice(cells, size)):
        yield id_texts(block)


def id_texts(cells: list[Any]) -> pa.Array:
    """:func:`text_blocks` for one block of cells."""
    import pyarrow as pa

    from leadsync.columnar import prepare_pyarrow

    prepare_pyarrow()
    kinds = set(map(type, cells))
    if kinds == {int}:  # whole numbers (ids): Arrow's digits are str()'s
        try:
            return pa.array(cells, pa.int64()).cast(pa.string())
        except OverflowError:
            pass
    # a text is its own id text, a whole number its digits: only the others are converted
    return pa.array(
        [v if v.__class__ is str else str(v) if v.__class__ is int else _id_text(v) for v in cells],
        pa.string(),
    )


def _id_text(value: Any) -> str:
    return display_text(value.value if value.__class__ is Shown else value)
