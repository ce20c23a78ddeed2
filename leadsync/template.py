"""Blank input templates, written from the field catalogue (``leadsync template``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

from leadsync.fields import FIELDS, Field, Kind
from leadsync.reader import column_letter
from leadsync.validator import EXAMPLE_ID

EXAMPLE_QUESTION = "questionnaire: What is your budget?"
EXAMPLE_META = "meta: source"


def template_columns() -> list[tuple[str, str, Any]]:
    """(header, explanation, example value) for every column of the template."""
    cols: list[tuple[str, str, Any]] = [
        ("id", "Lead id (required): the lead to update. Delete the example row.", EXAMPLE_ID),
    ]
    for f in FIELDS:
        if f.kind is Kind.QUESTIONNAIRE:
            cols.append(
                (
                    EXAMPLE_QUESTION,
                    "One column per question, headed 'questionnaire: <question>'; the "
                    "answer is appended to the lead's answers. " + _limits(f),
                    "£350k",
                )
            )
        elif f.kind is Kind.META:
            cols.append(
                (EXAMPLE_META, "One column per key, headed 'meta: <key>'. " + _limits(f), "crm")
            )
        else:
            cols.append((f.name, f.description + (" Required." if f.required else ""), _example(f)))
    return cols


def _limits(f: Field) -> str:
    return f"At most {f.max_json_bytes} bytes as JSON." if f.max_json_bytes else ""


def _example(f: Field) -> Any:
    if f.kind is Kind.INTEGER:
        return int(f.example)
    return f.example


def template_csv() -> str:
    """The CSV template: a header row and one example row."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    cols = template_columns()
    w.writerow([c[0] for c in cols])
    w.writerow([c[2] for c in cols])
    return out.getvalue()


def write_template(path: Path, fmt: str) -> None:
    """Write the template in ``fmt`` ("csv" or "xlsx") to ``path``."""
    if fmt == "csv":
        # utf-8-sig so that Excel on Windows opens '£' correctly
        path.write_text(template_csv(), encoding="utf-8-sig", newline="")
        return
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font

    cols = template_columns()
    book = Workbook()
    leads = book.active
    assert leads is not None
    leads.title = "Leads"
    leads.append([c[0] for c in cols])
    for j, (header, explanation, example) in enumerate(cols, start=1):
        cell = leads.cell(row=1, column=j)
        cell.font = Font(bold=True)
        cell.comment = Comment(explanation, "leadsync", width=300, height=110)
        value: Any = example
        if header == "next_action_date":
            value = dt.date(2025, 7, 12)
        ex = leads.cell(row=2, column=j, value=value)
        ex.font = Font(italic=True, color="808080")
        if header == "next_action_date":
            ex.number_format = "dd/mm/yyyy"
        leads.column_dimensions[column_letter(j - 1)].width = max(12, min(40, len(header) + 4))
    leads.freeze_panes = "B2"
    info = book.create_sheet("Columns")
    info.append(["column", "what it holds", "example"])
    for c in info[1]:
        c.font = Font(bold=True)
    for header, explanation, example in cols:
        info.append([header, explanation, str(example)])
    info.append([])
    info.append(
        [
            "A blank cell leaves that field unchanged. Columns leadsync does not know "
            "are listed in the report and not sent."
        ]
    )
    info.column_dimensions["A"].width = 36
    info.column_dimensions["B"].width = 90
    info.column_dimensions["C"].width = 24
    # built in memory, then written in one go: a full disk fails cleanly, with no
    # half-closed zip left for the garbage collector to complain about
    buffer = io.BytesIO()
    book.save(buffer)
    path.write_bytes(buffer.getvalue())
