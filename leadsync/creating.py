"""``--create`` (spec §4b): who a new lead is, so that one person is never created twice.

A row without a lead id has no id to key it by, so leadsync keys it by the *person*: their
email, else their phone, else their name and postcodes (:func:`person_key`). The journal
records a create's intent under that key before the ``POST`` and the new id after, so a
re-run of the same file finds the lead it made and updates it instead of creating another;
two rows of one file with the same key would create two leads for one person, and are
refused before anything is sent (:func:`scan_people`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadsync.fields import ID_HEADER
from leadsync.model import Code, Outcome, SendResult

if TYPE_CHECKING:
    from leadsync.config import Config
    from leadsync.journal import Journal
    from leadsync.mapper import ColumnarRows
    from leadsync.model import ColumnPlan
    from leadsync.reader import Table
    from leadsync.run import Run
    from leadsync.sender import RowSender

_NAME_KEYS = ("first_name", "last_name", "type", "postcode", "advert_postcode")
PERSON_FIELDS = ("email", "phone", *_NAME_KEYS)  # the payload fields person_key reads


def person_key(payload: Mapping[str, Any]) -> str:
    """The person a create is for: ``email:…`` (case-folded), else ``phone:…`` (digits,
    a UK +44 written as 0), else ``name:…`` (a hash of the names, type and postcodes)."""
    email = str(payload.get("email") or "").strip().casefold()
    if email:
        return f"email:{email}"
    digits = "".join(ch for ch in str(payload.get("phone") or "") if ch.isdigit())
    if digits:
        if digits.startswith("44") and len(digits) == 12:
            digits = "0" + digits[2:]  # +44 7700 900123 and 07700 900123 are one phone
        return f"phone:{digits}"
    parts = [" ".join(str(payload.get(k) or "").casefold().split()) for k in _NAME_KEYS]
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
    return f"name:{digest[:24]}"


def shown_person(key: str) -> str:
    """A person key as a message may show it: the email or phone, not the hash."""
    kind, _, value = key.partition(":")
    return "the same name and postcode" if kind == "name" else f"the {kind} {value!r}"


def scan_people(table: Table, plan: ColumnPlan, config: Config) -> frozenset[str]:
    """The person keys that more than one row without a lead id would create (one pass
    over the file, row by row: files of new leads are small)."""
    from leadsync.mapper import fast_path_applies, map_chunk, one_per_row

    counts: Counter[str] = Counter()
    if fast_path_applies(plan, config):
        for key in _columnar_people(table, plan, config):
            counts[key] += 1
        return frozenset(k for k, n in counts.items() if n > 1)
    mapped = (
        pair
        for chunk in table.chunks(config.chunk_rows)
        for pair in zip(map_chunk(chunk, plan, config), chunk.rows(), strict=True)
    )
    for row, _ in one_per_row(mapped, plan):
        if not row.blank and row.lead_id is None:
            counts[person_key(row.payload)] += 1
    return frozenset(k for k, n in counts.items() if n > 1)


def _columnar_people(table: Table, plan: ColumnPlan, config: Config) -> Iterator[str]:
    """The person key of every non-blank row without a lead id, as :func:`scan_people`
    reads them: the rows the columnar mapper vouches for from its columns, the others
    mapped one by one."""
    import numpy as np

    from leadsync.mapper import lead_id_missing, map_chunk, map_columns

    judged: dict[tuple[str, str], str | None] = {}
    for chunk in table.chunks(config.chunk_rows):
        columns = map_columns(chunk, plan, config, judged)
        ids = columns.ids
        no_id = lead_id_missing(ids) if ids is not None else np.ones(len(chunk), dtype=bool)
        simple = np.flatnonzero(columns.simple & no_id & ~columns.blank)
        yield from person_keys(columns, plan, simple)
        rest = np.flatnonzero(~columns.simple & ~columns.blank).tolist()
        for row in map_chunk(chunk.take(rest), plan, config) if rest else ():
            if not row.blank and row.lead_id is None:
                yield person_key(row.payload)


def person_keys(rows: ColumnarRows, plan: ColumnPlan, where: Any) -> list[str]:
    """:func:`person_key` of the rows at ``where`` the columnar mapper vouches for."""
    columns = payload_texts(rows, plan, PERSON_FIELDS, where)
    return [
        person_key(dict(zip(PERSON_FIELDS, values, strict=True)))
        for values in zip(*columns, strict=True)
    ]


def payload_texts(
    rows: ColumnarRows, plan: ColumnPlan, fields: Iterable[str], where: Any = None
) -> list[list[Any]]:
    """Each of ``fields`` of the payload, row by row (at ``where``; a blank cell as its
    default, else ""): what a new lead's person key and rules read."""
    import pyarrow as pa

    n = len(rows.simple)
    out = []
    for fname in fields:
        cells = rows.cells.get(fname)
        default = plan.defaults.get(fname, "")
        if cells is None:
            out.append([default] * (n if where is None else len(where)))
            continue
        texts = cells.array if where is None else cells.array.take(pa.array(where, pa.int64()))
        out.append([t or default for t in texts.to_pylist()])
    return out


def earlier_lead(
    journal: Journal, sender: RowSender, person: str, run_id: str
) -> tuple[str | None, SendResult | None]:
    """The lead an earlier run made for this person, if any; or, when an earlier create
    of theirs is still in doubt and looking the person up cannot settle it, the
    ``unknown`` result that keeps it from being posted again. Creates the lookup shows
    provably absent are settled as not made."""
    lead = journal.creates.lead_of(person)
    if lead is not None:
        return lead, None
    for earlier in journal.creates.pending(person, run_id):
        found, absent = sender.find_created(earlier.payload)
        # the API said it created that one (its answer had no id): never absent
        absent = absent and earlier.code != Code.NO_ID_IN_ANSWER
        if found is None and not absent:
            why = absent_why(earlier.payload, earlier.code)
            return None, SendResult(
                Outcome.UNKNOWN,
                code=Code.AMBIGUOUS_CREATE,
                message=f"run {earlier.run_id} posted this lead without learning its id, "
                f"and looking the person up could not tell ({why}); it is not posted "
                "again: check the leads, add the lead id to the row if it exists, and re-run",
            )
        journal.creates.resolve(earlier, run_id, found)
        if found is not None:
            return found, None
    return None, None


def post_journalled(
    journal: Journal,
    sender: RowSender,
    run_id: str,
    row: int,
    person: str,
    payload: dict[str, Any],
) -> SendResult:
    """Post a new lead: the intent committed before the request, the answer (and the new
    id) after, so that a crash between the two is settled by a lookup next time."""
    attempt = journal.creates.begin(run_id, row, person, payload)
    result = sender.send(None, payload)
    journal.creates.finish(
        attempt,
        run_id,
        result.outcome,
        payload,
        result.lead_id,
        result.http_status,
        result.code,
        result.message,
    )
    return result


def absent_why(payload: Mapping[str, Any], code: str = "") -> str:
    """Why a lost create could not be settled by a lookup (``code``: how it ended)."""
    if not (payload.get("email") or payload.get("phone")):
        return "the row has no email or phone to look the person up by"
    if code == Code.NO_ID_IN_ANSWER:
        return "the API said it created the lead, and the lookup does not find it"
    return (
        "the lookup failed, or found more than one lead like this row's, or one that "
        "does not show its names"
    )


def check_ids_path(path: str | Path, source: str | Path) -> Path:
    """``--write-ids PATH``, checked before anything is sent: a ``.csv`` or ``.xlsx`` in
    a folder that exists, and not the input itself."""
    from leadsync.errors import InputError

    p = Path(path)
    if p.suffix.lower() not in (".csv", ".xlsx"):
        raise InputError(f"--write-ids {p.name}: leadsync writes the copy as .csv or .xlsx")
    if not p.parent.is_dir():
        raise InputError(f"--write-ids {p}: the folder {p.parent} does not exist")
    if p.exists() and p.resolve() == Path(source).resolve():
        raise InputError("--write-ids must not be the input file itself: choose another path")
    return p


def write_ids_copy(run: Run, ids: Mapping[int, str], path: Path) -> dict[str, Any]:
    """Write the input again to ``path`` (CSV or XLSX by its suffix, owner-only) with the
    id column filled in where a row without one found or created its lead; a file with
    no id column gets one, headed ``id``, at the end. Returns what the summary says."""
    import os

    table, plan = run.table, run.plan
    headers = list(table.headers)
    index = plan.id_index
    if index is None:
        headers.append(ID_HEADER)
        index = len(headers) - 1
    filled = 0

    def rows() -> Iterator[list[Any]]:
        nonlocal filled
        for chunk in table.chunks(run.config.chunk_rows, fast=False):
            for number, cells in zip(chunk.row_numbers, chunk.rows(), strict=True):
                out = list(cells[: len(headers)]) + [None] * (len(headers) - len(cells))
                if number in ids:
                    out[index] = ids[number]
                    filled += 1
                yield out

    partial = path.with_name(f".{path.name}.partial")
    if path.suffix.lower() == ".csv":
        # the input's own UTF-8 (with or without a BOM); any other encoding becomes UTF-8
        # with a BOM, which Excel opens right
        encoding = "utf-8" if table.encoding == "utf-8" else "utf-8-sig"
        _write_csv(partial, headers, rows(), table.delimiter or ",", encoding)
    else:
        _write_xlsx(partial, headers, rows(), table.sheet)
    os.replace(partial, path)  # a crash leaves the last copy whole, never half a file
    return {"path": str(path), "rows_filled": filled}


def _write_csv(
    path: Path, headers: list[str], rows: Iterator[list[Any]], delimiter: str, encoding: str
) -> None:
    import csv

    from leadsync.private import open_private
    from leadsync.reader import cell_text

    with (
        open_private(path, "wb") as raw,
        io.TextIOWrapper(raw, encoding=encoding, newline="") as fh,
    ):
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(headers)
        for row in rows:
            writer.writerow(["" if c is None else cell_text(c) for c in row])


def _write_xlsx(
    path: Path, headers: list[str], rows: Iterator[list[Any]], sheet: str | None
) -> None:
    import xlsxwriter

    from leadsync.private import open_private
    from leadsync.xlsx_report import excel_sheet_name, write_cell

    with open_private(path, "wb") as fh:
        book = xlsxwriter.Workbook(
            fh,
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        target = _Cells(
            book.add_worksheet(excel_sheet_name(sheet)),
            book.add_format({"num_format": "yyyy-mm-dd"}),
            book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
        )
        bold = book.add_format({"bold": True})
        for j, header in enumerate(headers):
            target.sheet.write_string(0, j, header, bold)
        for i, row in enumerate(rows, start=1):
            for j, value in enumerate(row):
                write_cell(target, i, j, value, None)
        book.close()


@dataclass
class _Cells:
    """What :func:`~leadsync.xlsx_report.write_cell` writes through: a sheet and its
    date formats."""

    sheet: Any
    date_format: Any
    datetime_format: Any
