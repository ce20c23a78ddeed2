"""Regenerate the sample export: ``python sample_data/generate.py``.

Writes ``leads.csv`` and ``leads.xlsx`` (here and in ``leadsync/data/sample/``) with the
same 200 rows (seeded, so the files are reproducible): a realistic CRM export from a
British estate agency, with questionnaire and meta columns, a column leadsync does not
know (``Notes``) and a few deliberate mistakes that ``leadsync validate`` must catch.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGED = HERE.parent / "leadsync" / "data" / "sample"

HEADERS = [
    "Lead ID",
    "First Name",
    "Last Name",
    "Address",
    "Postcode",
    "Status",
    "Office ID",
    "GDPR Checkbox",
    "Next Action Date",
    "questionnaire: What is your budget?",
    "questionnaire: When are you looking to move?",
    "meta: source",
    "meta: agent",
    "UTM Source",
    "Notes",
]
FIRST = [
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Oliver",
    "George",
    "Harry",
    "Noah",
    "Jack",
    "Charlie",
    "Sophie",
    "Emily",
    "Freya",
    "Arthur",
    "Muhammad",
    "Siobhán",
    "Zoë",
    "Rhys",
    "Niamh",
    "Callum",
    "Priya",
    "Chloé",
    "Thomas",
    "Evie",
    "Dylan",
]
LAST = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "O'Brien",
    "Evans",
    "Thomas",
    "Roberts",
    "Walker",
    "Wright",
    "Khan",
    "Hughes",
    "Edwards",
    "Green",
    "Hall",
    "Fitzgerald-Howard",
    "MacDonald",
]
STREETS = [
    "High Street",
    "Station Road",
    "Church Lane",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Park Avenue",
    "Kings Road",
    "The Crescent",
    "Mill Lane",
]
TOWNS = [
    ("Bristol", "BS"),
    ("Bath", "BA"),
    ("Leeds", "LS"),
    ("Manchester", "M"),
    ("Cardiff", "CF"),
    ("Oxford", "OX"),
    ("York", "YO"),
    ("Brighton", "BN"),
]
STATUSES = ["New", "Contacted", "Valuation booked", "Instructed", "Lost"]
BUDGETS = ["£250k", "£300k-£350k", "£400k", "£500k+", "Up to £200k", ""]
MOVES = ["ASAP", "Within 3 months", "6 months", "Just browsing", ""]
SOURCES = ["rightmove", "zoopla", "website", "walk-in", "onthemarket"]
AGENTS = ["Sarah P", "Tom B", "Ana R", ""]


def make_rows() -> list[list[Any]]:
    rnd = random.Random(20251126)
    rows: list[list[Any]] = []
    for i in range(200):
        town, area = rnd.choice(TOWNS)
        letters = "".join(rnd.choice("ABDEFGHJLNPQRSTUWXYZ") for _ in range(2))
        postcode = f"{area}{rnd.randint(1, 20)} {rnd.randint(1, 9)}{letters}"
        when = dt.date(2025, 7, 1) + dt.timedelta(days=rnd.randint(0, 120))
        rows.append(
            [
                480001 + i,
                rnd.choice(FIRST),
                rnd.choice(LAST),
                f"{rnd.randint(1, 180)} {rnd.choice(STREETS)}, {town}",
                postcode,
                rnd.choice(STATUSES),
                rnd.choice([1213, 1214, 1215]),
                rnd.choice(["yes", "no", "Y", "N", True, False]),
                when if rnd.random() < 0.8 else None,
                rnd.choice(BUDGETS),
                rnd.choice(MOVES),
                rnd.choice(SOURCES),
                rnd.choice(AGENTS),
                rnd.choice(["", "", "call after 5pm", "prefers email", "chain-free"]),
            ]
        )
    # The deliberate mistakes, each one a row the README talks about.
    rows[6][1] = None  # first name missing: names are required
    rows[19][6] = 1213.5  # office id not a whole number
    rows[33][8] = "31/02/2025"  # no such date
    rows[47][7] = "maybe"  # not a yes/no
    rows[72][0] = 480050  # the same lead as row 51: both rows flagged
    rows[88][2] = "Montgomery-Fotheringham-Wolstenholme-Ashby-de-la-Zouch"  # 54 characters
    rows[120] = [None] * len(HEADERS)  # an empty line in the middle of the export
    rows[150][0] = None  # no lead id
    rows[164][8] = "2025-08-14 09:30"  # a date-time: sent in UTC (08:30Z in summer)
    return rows


def csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")  # what Excel writes for a British locale
    return str(value)


def main() -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    rows = make_rows()
    with (HERE / "leads.csv").open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(HEADERS)
        for r in rows:
            w.writerow([csv_text(v) for v in r])
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Leads"
    sheet.append(HEADERS)
    for c in sheet[1]:
        c.font = Font(bold=True)
    for r in rows:
        sheet.append(r)
    for cell in sheet["I"][1:]:
        if isinstance(cell.value, dt.date):
            cell.number_format = "dd/mm/yyyy"
    book.save(HERE / "leads.xlsx")
    # the copy that ships inside the package (leadsync demo works from any folder after
    # a plain install); tests/test_packaging.py fails when the two drift apart
    import shutil

    for name in ("leads.csv", "leads.xlsx"):
        shutil.copyfile(HERE / name, PACKAGED / name)


if __name__ == "__main__":
    main()
