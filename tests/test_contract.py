"""The contract between the catalogues and the paths (issue 14): every value form the
field catalogue promises is cleared by the columnar path with the reference's payload,
and every problem code a file can cause is caused — on both paths, in the same report.

A code or a form added to a catalogue without an example here fails these tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import leadsync
from leadsync.config import Config
from leadsync.fields import FIELDS, FIELDS_BY_NAME, VALUE_FORMS, Kind, Operation
from leadsync.model import CODE_INFO, Code
from leadsync.rules import check_payload
from tests.conftest import read_csv_report, write_csv
from tests.test_fast_path import assert_same, left_to_row_by_row

# the one column of each type the forms are tried in (every field of a type shares its
# conversion: the field catalogue says so)
COLUMN_OF = {
    Kind.DATE: "next_action_date",
    Kind.INTEGER: "office_id",
    Kind.BOOLEAN: "gdpr_checkbox",
}


def test_every_field_type_with_forms_has_a_column_to_try_them_in() -> None:
    kinds = {f.kind for f in FIELDS} & set(VALUE_FORMS)
    assert kinds == set(COLUMN_OF)
    for kind, column in COLUMN_OF.items():
        assert FIELDS_BY_NAME[column].kind is kind


@pytest.mark.parametrize(
    ("kind", "form"), [(k, f) for k, forms in VALUE_FORMS.items() for f in forms]
)
def test_each_promised_value_form_is_cleared_column_by_column_as_the_reference_reads_it(
    tmp_path: Path, kind: Kind, form: str
) -> None:
    column = COLUMN_OF[kind]
    rows = [["id", "first_name", "last_name", column]]
    rows += [[str(1000 + i), "Ann", "Lee", form] for i in range(40)]
    src = write_csv(tmp_path / "forms.csv", rows)
    config = Config(chunk_rows=16)
    assert assert_same(src, config, tmp_path) == 40  # the same payloads on both paths
    reference = list(leadsync.mapped_rows(src, config, fast=False))
    assert all(not r.problems and column in r.payload for r in reference), form
    assert left_to_row_by_row(src, config) == 0  # not one row left to the slow path


# -- every problem code a file can cause -------------------------------------------------

BASE = {"id": "1001", "first_name": "Ann", "last_name": "Lee"}
UPDATE, CREATE = Config(chunk_rows=7), Config(chunk_rows=7, create=True)
# code -> (config, the rows that cause it: header -> cell)
FROM_A_FILE: dict[Code, tuple[Config, list[dict[str, str]]]] = {
    Code.EXCEL_ERROR: (UPDATE, [{"status": "#N/A"}]),
    Code.EXTRA_CELLS: (UPDATE, [{"status": "New", "": "spill"}]),
    Code.NOT_A_NUMBER: (UPDATE, [{"office_id": "Bristol"}]),
    Code.NOT_WHOLE_NUMBER: (UPDATE, [{"office_id": "1213.5"}]),
    Code.INVALID_BOOLEAN: (UPDATE, [{"gdpr_checkbox": "maybe"}]),
    Code.INVALID_DATE: (UPDATE, [{"next_action_date": "31/02/2025"}]),
    Code.INVALID_JSON: (UPDATE, [{"questionnaire": "[oops"}]),
    Code.ID_MISSING: (UPDATE, [{"id": "", "status": "New"}]),
    Code.ID_INVALID: (UPDATE, [{"id": "../1001"}]),
    Code.ID_EXAMPLE: (UPDATE, [{"id": "EXAMPLE"}]),
    Code.ID_DUPLICATE: (UPDATE, [{"status": "New"}, {"status": "Lost"}]),
    Code.WRONG_TYPE: (UPDATE, [{"questionnaire": '{"Budget?": "£1"}'}]),
    Code.REQUIRED: (UPDATE, [{"first_name": "", "status": "New"}]),
    Code.TOO_LONG: (UPDATE, [{"first_name": "Ö" * 51}]),
    Code.TOO_LARGE: (UPDATE, [{"meta: note": "é" * 200}]),
    Code.CONTROL_CHARACTER: (UPDATE, [{"status": "Ne\x01w"}]),
    Code.STATUS_NOT_ALLOWED: (Config(chunk_rows=7, statuses=("New",)), [{"status": "Lost"}]),
    Code.INVALID_OFFICE_ID: (UPDATE, [{"office_id": "0"}]),
    Code.UNKNOWN_OFFICE: (UPDATE, [{"office_id": "9999"}]),  # with the account's offices
    Code.QUESTIONNAIRE_ITEM: (UPDATE, [{"questionnaire": '[["Budget?"]]'}]),
    Code.META_VALUE: (UPDATE, [{"meta": '{"k": 1}'}]),
    Code.NOT_ALLOWED: (CREATE, [{"id": "", "type": "buyer"}]),
    Code.INVALID_EMAIL: (CREATE, [{"id": "", "type": "vendor", "postcode": "BS1", "email": "a@"}]),
    Code.INVALID_PHONE: (CREATE, [{"id": "", "type": "vendor", "postcode": "BS1", "phone": "12"}]),
    Code.INVALID_URL: (
        CREATE,
        [{"id": "", "type": "vendor", "postcode": "BS1", "advert_url": "ftp://x.io"}],
    ),
    Code.NOT_FOR_TYPE: (CREATE, [{"id": "", "type": "vendor"}]),
    Code.PERSON_DUPLICATE: (
        CREATE,
        [{"id": "", "type": "vendor", "postcode": "BS1", "email": "a@b.co"}] * 2,
    ),
}
# codes no spreadsheet cell can cause (the mapper leaves a blank cell out; the rule book
# still refuses such a payload, and the sandbox answers it with a 422)
RULE_BOOK_ONLY: dict[Code, dict[str, Any]] = {
    Code.UNKNOWN_FIELD: {"favourite_colour": "blue"},
    Code.NULL: {"status": None},
    Code.BLANK: {"status": "   "},
}


def test_every_code_a_file_can_cause_has_an_example_here() -> None:
    reachable = {c for c, (stage, _) in CODE_INFO.items() if stage != "send"}
    # too_short needs a field with a minimum above one character: none has one today
    assert all((f.min_chars or 0) <= 1 for f in FIELDS)
    assert reachable - {Code.TOO_SHORT} == set(FROM_A_FILE) | set(RULE_BOOK_ONLY)


@pytest.mark.parametrize("code", sorted(FROM_A_FILE))
def test_each_code_comes_out_of_a_real_file_on_both_paths(tmp_path: Path, code: Code) -> None:
    config, cells = FROM_A_FILE[code]
    headers = list(BASE) + sorted({h for row in cells for h in row if h and h not in BASE})
    rows: list[list[str]] = [headers]
    for row in cells:
        line = [{**BASE, **row}.get(h, "") for h in headers]
        rows.append(line + ([row[""]] if "" in row else []))
    src = write_csv(tmp_path / "case.csv", rows)
    offices = {1213} if code is Code.UNKNOWN_OFFICE else None
    reports = {}
    for fast in (True, False):
        out = tmp_path / f"o-{fast}"
        leadsync.validate(src, config, out, fast=fast, xlsx_report=False, office_ids=offices)
        reports[fast] = (out / "failures.csv").read_bytes()
        codes = {r["code"] for r in read_csv_report(out / "failures.csv")}
        assert code in codes, (fast, codes)
    assert reports[True] == reports[False]


@pytest.mark.parametrize("code", sorted(RULE_BOOK_ONLY))
def test_the_codes_no_cell_can_cause_are_the_rule_book_s_and_the_sandbox_s(code: Code) -> None:
    payload = {"first_name": "Ann", "last_name": "Lee", **RULE_BOOK_ONLY[code]}
    found = check_payload(payload, operation=Operation.UPDATE)
    assert code in {c for items in found.values() for c, _ in items}


def test_typed_workbook_cells_of_every_promised_kind_are_cleared_column_by_column(
    tmp_path: Path,
) -> None:
    """Excel date and date-time cells, TRUE/FALSE cells and number cells (whole, and a
    float one) take the columnar path with the reference's payloads, as text does."""
    import datetime as dt

    from tests.conftest import write_xlsx

    typed = [dt.date(2025, 7, 12), dt.datetime(2025, 7, 12, 14, 30), dt.datetime(2025, 1, 5, 9)]
    rows: list[list[Any]] = [["id", "first_name", "last_name", *COLUMN_OF.values()]]
    for i in range(60):
        office = 1213 if i % 2 else 1214.0
        rows.append([1000 + i, "Ann", "Lee", typed[i % 3], office, bool(i % 2)])
    src = write_xlsx(tmp_path / "typed.xlsx", rows)
    config = Config(chunk_rows=16)
    assert assert_same(src, config, tmp_path) == 60
    assert all(not r.problems for r in leadsync.mapped_rows(src, config, fast=False))
    assert left_to_row_by_row(src, config) == 0
