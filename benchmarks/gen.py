"""Generate realistic lead exports for the benchmarks (seeded, reproducible).

    python benchmarks/gen.py ROWS OUT.csv [--xlsx] [--mixed]

20 columns: ids, British names and addresses, statuses, office ids, yes/no, dates in two
formats, 3 questionnaire, 3 meta and 5 utm columns; about 1% of rows carry a mistake.
``--mixed``: every value form the README accepts, mixed in every column that takes it, each
value drawn at random (:data:`FORMS`), non-ASCII answers, and 1-5% of rows invalid across
many rules.
"""

from __future__ import annotations

import csv
import random
import sys
from collections.abc import Iterator
from pathlib import Path

from leadsync.fields import VALUE_FORMS, Kind

HEADERS = [
    "id",
    "first_name",
    "last_name",
    "address",
    "postcode",
    "status",
    "office_id",
    "gdpr_checkbox",
    "next_action_date",
    "questionnaire: Budget?",
    "questionnaire: Move by?",
    "questionnaire: Mortgage?",
    "meta: source",
    "meta: agent",
    "meta: branch",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
]
FIRST = ["Olivia", "Amelia", "Isla", "Oliver", "George", "Harry", "Siobhán", "Zoë", "Rhys"]
LAST = ["Smith", "Jones", "Taylor", "O'Brien", "Patel", "Fitzgerald-Howard", "Khan"]
STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane"]
TOWNS = ["Bristol", "Bath", "Leeds", "York", "Cardiff"]
STATUSES = ["New", "Contacted", "Valuation booked", "Instructed", "Lost"]


def rows(n: int, seed: int = 7) -> Iterator[list[str]]:
    rnd = random.Random(seed)
    for i in range(n):
        r = [
            str(1_000_000 + i),
            rnd.choice(FIRST),
            rnd.choice(LAST),
            f"{rnd.randint(1, 200)} {rnd.choice(STREETS)}, {rnd.choice(TOWNS)}",
            f"BS{rnd.randint(1, 20)} {rnd.randint(1, 9)}AB",
            rnd.choice(STATUSES),
            str(rnd.choice([1213, 1214, 1215])),
            rnd.choice(["yes", "no", "Y", "N"]),
            rnd.choice(["12/07/2025", "2025-08-01", "2025-07-12T10:00:00Z", ""]),
            rnd.choice(["£250k", "£400k", ""]),
            rnd.choice(["ASAP", "6 months", ""]),
            rnd.choice(["yes", "no", ""]),
            rnd.choice(["rightmove", "zoopla"]),
            rnd.choice(["Sarah", "Tom", ""]),
            rnd.choice(["north", "south"]),
            "rightmove",
            "portal",
            "spring",
            rnd.choice(["valuation", ""]),
            "banner",
        ]
        if rnd.random() < 0.01:
            bad = rnd.randrange(4)
            if bad == 0:
                r[2] = "x" * 51
            elif bad == 1:
                r[6] = "12.5"
            elif bad == 2:
                r[8] = "31/02/2025"
            else:
                r[7] = "maybe"
        yield r


def _ymd(r: random.Random) -> tuple[int, int, int]:
    return r.randint(2024, 2026), r.randint(1, 12), r.randint(1, 28)


def _hms(r: random.Random) -> tuple[int, int, int]:
    return r.randint(0, 23), r.randint(0, 59), r.randint(0, 59)


def _iso(r: random.Random, zone: str) -> str:
    (y, m, d), (hh, mi, ss) = _ymd(r), _hms(r)
    return f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mi:02d}:{ss:02d}{zone}"


def _local(r: random.Random) -> str:
    (y, m, d), (hh, mi, _) = _ymd(r), _hms(r)
    return f"{y}-{m:02d}-{d:02d} {hh:02d}:{mi:02d}"


def _dmy(r: random.Random, sep: str = "/", year_digits: int = 4) -> str:
    y, m, d = _ymd(r)
    return f"{d:02d}{sep}{m:02d}{sep}{y % 10**year_digits:0{year_digits}d}"


_MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"]  # fmt: skip


# column -> the forms users write in it, each a function of the random source. Every
# value is drawn at random (dates over three years, times to the second): a real
# export's dates are nearly all distinct, and a benchmark of a few repeated values would
# not show what a per-value cost does.
FORMS: dict[str, list[object]] = {
    "next_action_date": [
        lambda r: "{}-{:02d}-{:02d}".format(*_ymd(r)),
        _dmy,
        lambda r: _dmy(r, "-"),
        lambda r: "{}/{}/{}".format(*_ymd(r)),
        lambda r: _iso(r, "Z"),
        lambda r: _iso(r, r.choice(["+01:00", "-05:00", "+05:30"])),
        lambda r: _iso(r, r.choice(["+0100", "-0500"])),
        lambda r: _iso(r, f".{r.randint(0, 999):03d}Z"),
        _local,
        lambda r: _iso(r, "")[:19],  # 2025-07-12T14:30:15: naive, to the second
        lambda r: f"{_dmy(r)} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
        lambda r: f"{_dmy(r)} {r.randint(1, 12)}:{r.randint(0, 59):02d} {r.choice(['am', 'pm'])}",
        lambda r: _dmy(r, ".", 2),
        lambda r: f"{r.randint(1, 28)} {r.choice(_MONTH_NAMES)} {r.randint(2024, 2026)}",
        lambda r: f"{r.choice(_MONTH_NAMES)[:3]} {r.randint(1, 28)}, {r.randint(2024, 2026)}",
        lambda r: f"{r.randint(4, 20)}th {r.choice(_MONTH_NAMES)[:3]} {r.randint(2024, 2026)}",
        # the hours a British clock shows twice and never (the reference settles both)
        lambda r: f"2025-10-26 01:{r.randint(0, 59):02d}",
        lambda r: f"2025-03-30 01:{r.randint(0, 59):02d}",
        # Excel serials (a date cell that lost its format): days, and days with a time
        lambda r: str(r.randint(45292, 46387)),
        lambda r: f"{r.randint(45292, 46387)}.{r.randint(0, 10**10 - 1):010d}",
    ],
    # every number and flag form the catalogue promises (fields.VALUE_FORMS), drawn at random
    "office_id": [lambda r: r.choice(VALUE_FORMS[Kind.INTEGER])],
    "gdpr_checkbox": [lambda r: r.choice(VALUE_FORMS[Kind.BOOLEAN])],
}
_MIXED_ANSWERS = ["£250k", "£400k", "Zoë's café", "déjà vu — asap", "🏠 first home", ""]


def mixed_rows(n: int, seed: int = 11) -> Iterator[list[str]]:
    """:func:`rows`, with every value form of :data:`FORMS` mixed in its column, non-ASCII
    answers, and about 3% of rows invalid (too long, not a number, not a date, not a
    flag, a bad id, a repeated id, a meta value over its size)."""
    rnd = random.Random(seed)
    index = {name: HEADERS.index(name) for name in FORMS}
    for r in rows(n, seed):
        for name, forms in FORMS.items():
            if r[index[name]]:
                r[index[name]] = forms[rnd.randrange(len(forms))](rnd)  # type: ignore[operator]
        r[9] = rnd.choice(_MIXED_ANSWERS)
        if rnd.random() < 0.03:
            bad = rnd.randrange(7)
            if bad == 0:
                r[1] = "Ö" * 51
            elif bad == 1:
                r[6] = "Bristol"
            elif bad == 2:
                r[8] = "31/02/2025"
            elif bad == 3:
                r[7] = "perhaps"
            elif bad == 4:
                r[0] = "../1000"
            elif bad == 5:
                r[0] = "1000000"  # the first row's id again
            else:
                r[13] = "é" * 200  # meta over 1024 bytes as PHP counts them
        yield r


def write_csv(path: Path, n: int, mixed: bool = False) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        w.writerows(mixed_rows(n) if mixed else rows(n))


def write_xlsx(path: Path, n: int, formatted: bool = False, mixed: bool = False) -> None:
    """The rows as a workbook; ``formatted``: with number cells under number formats as
    users have them: the budget a number shown "£"#,##0, the office id shown #,##0, the
    date a date-time shown dd/mm/yyyy hh:mm (at midnight: calamine reads a plain date);
    ``mixed``: the rows of :func:`mixed_rows`, a quarter of their dates, flags and
    numbers as the typed cells a workbook holds (a date or date-time cell, TRUE/FALSE, a
    number), a typed number or flag now and then in a text column too (seeded)."""
    import datetime as dt

    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    ws = book.create_sheet("Leads")
    ws.append(HEADERS)

    def cell(value: object, fmt: str) -> object:
        c = WriteOnlyCell(ws, value=value)
        c.number_format = fmt
        return c

    budgets = {"£250k": 250_000, "£400k": 400_000}
    rnd = random.Random(5)
    for r in mixed_rows(n) if mixed else rows(n):
        out: list[object] = list(r)
        out[0] = int(r[0]) if r[0].isdigit() else r[0]
        out[6] = int(r[6]) if r[6].isdigit() else r[6]
        if mixed and rnd.random() < 0.25:
            out[:] = _typed(out, rnd)
        if formatted:
            if isinstance(out[6], int):
                out[6] = cell(out[6], "#,##0")
            if r[9] in budgets:
                out[9] = cell(budgets[r[9]], '"£"#,##0')
            if r[8] == "12/07/2025":
                out[8] = cell(dt.datetime(2025, 7, 12), "dd/mm/yyyy hh:mm")
        ws.append(out)
    book.save(path)


def _typed(row: list[object], rnd: random.Random) -> list[object]:
    """A mixed row's cells as a workbook's typed cells where they read as such."""
    import datetime as dt

    out = list(row)
    date = out[8]
    if isinstance(date, str) and len(date) == 10 and date[4] == "-" and date[7] == "-":
        day = dt.date.fromisoformat(date)
        out[8] = day if rnd.random() < 0.5 else dt.datetime.combine(day, dt.time(14, 30))
    flag = out[7]
    if isinstance(flag, str) and flag.lower() in ("true", "false"):
        out[7] = flag.lower() == "true"
    office = out[6]
    if isinstance(office, str) and office.endswith(".0") and office[:-2].isdigit():
        out[6] = float(office)
    if rnd.random() < 0.2:  # a typed value in a text column: an answer, a utm term
        out[rnd.choice((10, 11, 18))] = rnd.choice([12.5, 3.0, True, 2026])
    return out


if __name__ == "__main__":
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    if "--xlsx" in sys.argv:
        write_xlsx(out, count, mixed="--mixed" in sys.argv)
    else:
        write_csv(out, count, mixed="--mixed" in sys.argv)
