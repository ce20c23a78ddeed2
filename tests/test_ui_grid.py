"""The app's grid store: the columnar build gives the same rows, cells and problems as
the row-by-row reference, on real files (the sample workbook, its CSV, a workbook with
number formats and mixed value forms), and pages them in file order."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadsync.config import Config
from leadsync.run import open_rows
from leadsync.ui.grid import PAGE_ROWS, Grid
from tests.conftest import SAMPLE, write_xlsx


def _both(path: Path, tmp_path: Path) -> tuple[Grid, Grid]:
    config = Config()
    grids = []
    for fast in (True, False):
        table, plan, scan = open_rows(path, config)
        grids.append(
            Grid.build(tmp_path / f"g-{fast}.sqlite", table, plan, config, scan, fast=fast)
        )
    return grids[0], grids[1]


def _all(grid: Grid) -> list[object]:
    return [r for n in range(1, grid.count(False) // PAGE_ROWS + 2) for r in grid.page(n, False)]


def _formatted(tmp_path: Path) -> Path:
    rows = [
        [
            "id",
            "first_name",
            "last_name",
            "office_id",
            "next_action_date",
            "gdpr_checkbox",
            "postcode",
        ],
        [7, "Ann", "Lee", 1213, "2025-07-12T10:00:00Z", True, "BS1 4DJ"],
        [8, "Bo", "Khan", 1213.5, "31/02/2025", "maybe", 7],
        [9, "Cy", "", "1,213", "12 July 2025", "yes", "x" * 30],
        [None, None, None, None, None, None, None],
        [10, "Di", "O'Neil", 1214, 45850.5, False, "BA1 1AA"],
    ]
    return write_xlsx(
        tmp_path / "formatted.xlsx", rows, number_formats={"A2": "00000", "G3": "000"}
    )


@pytest.mark.parametrize("name", ["leads.xlsx", "leads.csv", "formatted"])
def test_columnar_grid_equals_the_row_by_row_reference(tmp_path: Path, name: str) -> None:
    path = _formatted(tmp_path) if name == "formatted" else SAMPLE / name
    fast, slow = _both(path, tmp_path)
    assert fast.count(False) == slow.count(False) > 0
    assert fast.count(True) == slow.count(True) > 0
    assert _all(fast) == _all(slow)


def test_sample_grid_marks_the_bad_cells_in_file_order(tmp_path: Path) -> None:
    fast, _ = _both(SAMPLE / "leads.xlsx", tmp_path)
    bad = fast.page(1, True)
    assert [r.row for r in bad] == [8, 21, 35, 49, 51, 74, 90, 152]
    row35 = next(r for r in bad if r.row == 35)
    (column,) = row35.by_column
    assert fast.headers[column] == "Next Action Date" and row35.cells[column] == "31/02/2025"
    assert row35.by_column[column][0][0] == "invalid_date"
    blank = fast.page(3, False)[20]  # rows 102-151 on page 3
    assert (blank.row, blank.outcome) == (122, "skipped_blank")
    assert fast.page(5, False) == []  # past the end
