"""Blank input templates, written from the field catalogue (``leadsync template``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

from leadsync.fields import CREATE_REQUIRED, FIELDS, Field, Kind
from leadsync.reader import column_letter
from leadsync.rules import EXAMPLE_ID

_CREATE_FIRST = (
    "type",
    "title",
    "first_name",
    "last_name",
    "email",
    "phone",
    "address",
    "postcode",
    "advert_address",
    "advert_postcode",
    "advert_url",
    "source",
    "message",
    "appointment_availability",
)
EXAMPLE_QUESTION = "questionnaire: What is your budget?"
EXAMPLE_META = "meta: source"


def template_columns(create: bool = False) -> list[tuple[str, str, Any]]:
    """(header, explanation, example value) for every column of the template: the update
    fields, or with ``create`` every field a new lead takes too (for ``--create``)."""
    if create:
        explain = (
            "Lead id: leave blank for a new lead (sync --create creates it); a row with "
            "an id updates that lead. Delete the example row."
        )
    else:
        explain = "Lead id (required): the lead to update. Delete the example row."
    cols: list[tuple[str, str, Any]] = [("id", explain, EXAMPLE_ID)]
    fields = [f for f in FIELDS if (f.create if create else f.update)]
    if create:  # who the new lead is first, then the rest in the catalogue's order
        fields.sort(key=lambda f: _CREATE_FIRST.index(f.name) if f.name in _CREATE_FIRST else 99)
    for f in fields:
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
            required = f.name in CREATE_REQUIRED if create else f.required
            cols.append((f.name, f.description + (" Required." if required else ""), _example(f)))
    return cols


def _limits(f: Field) -> str:
    return f"At most {f.max_json_bytes} bytes as JSON." if f.max_json_bytes else ""


def _example(f: Field) -> Any:
    if f.kind is Kind.INTEGER:
        return int(f.example)
    return f.example


def template_csv(create: bool = False) -> str:
    """The CSV template: a header row and one example row."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    cols = template_columns(create)
    w.writerow([c[0] for c in cols])
    w.writerow([c[2] for c in cols])
    return out.getvalue()


def write_template(path: Path, fmt: str, create: bool = False) -> None:
    """Write the template in ``fmt`` ("csv" or "xlsx") to ``path`` (``create``: the
    template of new leads)."""
    if fmt == "csv":
        # utf-8-sig so that Excel on Windows opens '£' correctly
        path.write_text(template_csv(create), encoding="utf-8-sig", newline="")
        return
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Font

    cols = template_columns(create)
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
