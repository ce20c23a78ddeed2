"""Mapper: headers to fields, cells to JSON values (spec §3), over real files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadsync.config import Config, parse_mapping
from leadsync.errors import InputError, MappingError
from leadsync.fields import FIELDS_BY_NAME
from leadsync.mapper import (
    BLANK,
    Bad,
    convert_value,
    map_chunk,
    plan_columns,
    to_boolean,
    to_integer,
    to_iso_date,
)
from leadsync.model import MappedRow
from leadsync.reader import cell_text, open_table
from tests.conftest import write_csv, write_xlsx


def mapped(path: Path, config: Config | None = None) -> list[MappedRow]:
    config = config or Config()
    table = open_table(path)
    plan = plan_columns(table.headers, config)
    return [r for c in table.chunks(100) for r in map_chunk(c, plan, config)]


def test_headers_match_in_any_case_and_spacing(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["Lead ID", "First Name", "LAST_NAME", "  Post-Code ", "utm source", "Notes"],
            ["1", "Ann", "Lee", "BS1 1AA", "zoopla", "ignored"],
        ],
    )
    table = open_table(path)
    plan = plan_columns(table.headers, Config())
    assert plan.unmapped == ("Notes",)
    [row] = mapped(path)
    assert row.lead_id == "1"
    assert row.payload == {
        "first_name": "Ann",
        "last_name": "Lee",
        "postcode": "BS1 1AA",
        "utm_source": "zoopla",
    }


def test_questionnaire_and_meta_columns_become_pairs_and_keys(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            [
                "id",
                "questionnaire: Budget?",
                "Questionnaire: Move when?",
                "meta: source",
                "meta.agent",
            ],
            ["1", " £300k ", "", "crm", "Sarah"],
            ["2", "", "", "", ""],
        ],
    )
    rows = mapped(path)
    assert rows[0].payload == {
        "questionnaire": [["Budget?", "£300k"]],
        "meta": {"source": "crm", "agent": "Sarah"},
    }
    assert rows[1].blank


def test_json_cells_for_questionnaire_and_meta(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "questionnaire", "questionnaire: Extra?", "meta"],
            ["1", '[["Q1", "A1"]]', "yes", '{"k": "v"}'],
            ["2", "[not json", "", "[]"],
        ],
    )
    rows = mapped(path)
    assert rows[0].payload == {
        "questionnaire": [["Q1", "A1"], ["Extra?", "yes"]],
        "meta": {"k": "v"},
    }
    assert [p.code for p in rows[1].problems] == ["invalid_json"]
    assert rows[1].problems[0].column == "questionnaire"
    assert "meta" not in rows[1].payload  # an empty JSON object is left out, not sent


def test_blank_means_leave_unchanged_and_spaces_are_blank(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "first_name", "last_name", "status", "gdpr_checkbox"],
            ["1", "   ", "Lee", "", " "],
        ],
    )
    [row] = mapped(path)
    assert row.payload == {"last_name": "Lee"}
    assert "" not in json.dumps(row.payload).split('"')[1::2]


def test_words_pandas_would_turn_into_nan_survive_as_text(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "first_name", "last_name", "status"],
            ["1", "None", "NA", "N/A"],
            ["2", "null", "nan", "NaN"],
        ],
    )
    rows = mapped(path)
    assert rows[0].payload == {"first_name": "None", "last_name": "NA", "status": "N/A"}
    assert rows[1].payload == {"first_name": "null", "last_name": "nan", "status": "NaN"}


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("375", 375),
        ("375.0", 375),
        (" 375 ", 375),
        ("00375", 375),
        (375, 375),
        (375.0, 375),
        ("+12", 12),
    ],
)
def test_office_id_accepts_whole_numbers(cell: Any, expected: int) -> None:
    assert to_integer(cell) == expected


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        ("375.5", "not_whole_number"),
        (375.5, "not_whole_number"),
        ("abc", "not_a_number"),
        ("1e3", "not_a_number"),
        (True, "not_a_number"),
        ("3 75", "not_a_number"),
    ],
)
def test_office_id_rejects_what_is_not_a_whole_number(cell: Any, code: str) -> None:
    result = to_integer(cell)
    assert isinstance(result, Bad) and result.code == code


@pytest.mark.parametrize("cell", ["yes", "Y", "TRUE", "true", "1", "✓", 1, True, " Yes "])
def test_true_spellings(cell: Any) -> None:
    assert to_boolean(cell) is True


@pytest.mark.parametrize("cell", ["no", "N", "FALSE", "false", "0", "✗", 0, False])
def test_false_spellings(cell: Any) -> None:
    assert to_boolean(cell) is False


@pytest.mark.parametrize("cell", ["maybe", "2", "oui", 2])
def test_not_booleans(cell: Any) -> None:
    assert isinstance(to_boolean(cell), Bad)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("12/07/2025", "2025-07-12"),  # day first: the API is British
        ("12-07-2025", "2025-07-12"),
        ("12.07.25", "2025-07-12"),
        ("2025-07-12", "2025-07-12"),
        ("2025/07/12", "2025-07-12"),
        ("12 July 2025", "2025-07-12"),
        ("12th Jul 2025", "2025-07-12"),
        ("July 12, 2025", "2025-07-12"),
        (dt.date(2025, 7, 12), "2025-07-12"),
        # naive date-times are London time, sent in UTC
        ("12/07/2025 14:30", "2025-07-12T13:30:00Z"),  # BST
        ("12/01/2025 14:30", "2025-01-12T14:30:00Z"),  # GMT
        ("12/07/2025 2:30 pm", "2025-07-12T13:30:00Z"),
        ("2025-07-12T14:30:00", "2025-07-12T13:30:00Z"),
        ("2025-07-12T14:30:00+02:00", "2025-07-12T12:30:00Z"),
        ("2025-07-12T14:30Z", "2025-07-12T14:30:00Z"),
        (dt.datetime(2025, 7, 12, 0, 30), "2025-07-11T23:30:00Z"),
    ],
)
def test_dates(cell: Any, expected: str) -> None:
    assert to_iso_date(cell, Config()) == expected


def test_date_order_is_configurable() -> None:
    assert to_iso_date("07/12/2025", Config(date_order="MDY")) == "2025-07-12"
    assert to_iso_date("07/12/2025", Config()) == "2025-12-07"


def test_a_plain_date_is_never_shifted_by_the_time_zone() -> None:
    far_east = Config(timezone="Pacific/Kiritimati")
    assert to_iso_date("12/07/2025", far_east) == "2025-07-12"
    assert to_iso_date(dt.date(2025, 7, 12), far_east) == "2025-07-12"


@pytest.mark.parametrize(
    "cell", ["31/02/2025", "13/13/2025", "tomorrow", "2025-13-01", 2025, "01234", 100000, True]
)
def test_not_dates(cell: Any) -> None:
    result = to_iso_date(cell, Config())
    assert isinstance(result, Bad) and result.code == "invalid_date"


def test_excel_cells_keep_their_types(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "a.xlsx",
        [
            [
                "id",
                "office_id",
                "gdpr_checkbox",
                "next_action_date",
                "postcode",
                "questionnaire: Rooms?",
            ],
            [1001, 375, True, dt.date(2025, 7, 12), "007", 3],
            [1002, 375.0, "no", "12/07/2025", None, 2.5],
            [1003, 375.5, "Y", dt.datetime(2025, 7, 12, 14, 30), None, None],
        ],
        number_formats={"D2": "dd/mm/yyyy"},
    )
    rows = mapped(path)
    assert rows[0].lead_id == "1001"
    assert rows[0].payload == {
        "office_id": 375,
        "gdpr_checkbox": True,
        "next_action_date": "2025-07-12",
        "postcode": "007",
        "questionnaire": [["Rooms?", "3"]],
    }
    assert rows[1].payload == {
        "office_id": 375,
        "gdpr_checkbox": False,
        "next_action_date": "2025-07-12",
        "questionnaire": [["Rooms?", "2.5"]],
    }
    assert [(p.field, p.code, p.column_index) for p in rows[2].problems] == [
        ("office_id", "not_whole_number", 1)
    ]
    assert rows[2].payload["next_action_date"] == "2025-07-12T13:30:00Z"


def test_excel_serials_are_dates_in_a_workbook_and_a_csv(tmp_path: Path) -> None:
    # a date cell that lost its format shows its serial; its CSV holds the same digits
    header = ["id", "next_action_date"]
    body: list[list[Any]] = [[1001, 45850], [1002, 45850.5625], [1003, 2025], [1004, 45850.0]]
    book = write_xlsx(tmp_path / "serials.xlsx", [header, *body])
    sheet = write_csv(tmp_path / "serials.csv", [header, *([i, str(d)] for i, d in body)])
    for path in (book, sheet):
        rows = mapped(path)
        dates = [r.payload.get("next_action_date") for r in rows]
        assert dates == ["2025-07-12", "2025-07-12T12:30:00Z", None, "2025-07-12"], path
        assert [p.code for p in rows[2].problems] == ["invalid_date"]


def test_mapping_file_renames_maps_values_and_sets_defaults(tmp_path: Path) -> None:
    config = parse_mapping(
        {
            "columns": {
                "Ref": "id",
                "Forename": "first_name",
                "Budget": "questionnaire: Budget?",
                "Src": "meta: source",
                "Internal": "ignore",
            },
            "values": {"status": {"contacted": "Contacted"}, "gdpr_checkbox": {"opted in": True}},
            "defaults": {"office_id": "1213"},
        }
    )
    path = write_csv(
        tmp_path / "a.csv",
        [
            [
                "REF",
                "forename",
                "status",
                "gdpr_checkbox",
                "budget",
                "src",
                "internal",
                "office_id",
            ],
            ["1", "Ann", " CONTACTED ", "Opted in", "£1", "web", "secret", ""],
            ["2", "Bob", "New", "no", "", "", "", "1214"],
            ["", "", "", "", "", "", "x", ""],
        ],
    )
    table = open_table(path)
    assert plan_columns(table.headers, config).unmapped == ()
    rows = mapped(path, config)
    assert rows[0].payload == {
        "first_name": "Ann",
        "status": "Contacted",
        "gdpr_checkbox": True,
        "questionnaire": [["Budget?", "£1"]],
        "meta": {"source": "web"},
        "office_id": 1213,
    }
    assert rows[1].payload["office_id"] == 1214
    assert rows[2].blank  # an ignored column does not make a row non-blank; defaults don't either


def test_bad_default_is_a_mapping_error(tmp_path: Path) -> None:
    config = parse_mapping({"defaults": {"office_id": "Bristol"}})
    with pytest.raises(
        MappingError, match=r"\[defaults\] office_id = 'Bristol': expected a whole number"
    ):
        plan_columns(("id",), config)


def test_no_id_column_is_a_file_level_error() -> None:
    with pytest.raises(
        InputError, match="no lead id column: add a column headed 'id', 'lead_id' or 'Lead ID'"
    ):
        plan_columns(("first_name", "last_name"), Config())


def test_two_columns_for_one_field_is_a_file_level_error() -> None:
    with pytest.raises(
        InputError,
        match=r"columns 'First Name' \(B\) and 'first_name' \(C\) both map to first_name",
    ):
        plan_columns(("id", "First Name", "first_name"), Config())


# -- properties ---------------------------------------------------------------------

cells = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=False),
    st.dates(),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
)


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ('{"source": NaN}', "NaN is not a JSON value"),
        ('{"source": -Infinity}', "-Infinity is not a JSON value"),
        ('{"source": 1e999}', "1e999 is too large a number"),
        (1.7976931348623151e308, "1.79769313486232E+308 is too large a number"),
    ],
)
def test_json_cells_with_nan_or_infinity_are_refused(cell: Any, why: str) -> None:
    # json.loads accepts these; the API (and json.dumps(allow_nan=False)) does not
    value = convert_value(cell, FIELDS_BY_NAME["meta"], Config())
    assert isinstance(value, Bad)
    assert value.code == "invalid_json"
    assert value.message == f'meta is not valid JSON ({why}); expected {{"key": "value"}}'


@given(cell=cells, fname=st.sampled_from(sorted(FIELDS_BY_NAME)))
def test_conversion_never_raises_and_never_yields_blank_text_or_nan(cell: Any, fname: str) -> None:
    value = convert_value(cell, FIELDS_BY_NAME[fname], Config())
    if value is BLANK or isinstance(value, Bad):
        return
    assert value is not None and value != ""
    json.dumps(value, allow_nan=False)  # raises on NaN


@given(text=st.text(max_size=40))
def test_cell_text_is_trimmed(text: str) -> None:
    assert cell_text(text) == text.strip()
