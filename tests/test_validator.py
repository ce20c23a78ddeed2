"""Validator: every rule of the API docs at its edge, over real files, plus properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadsync.config import Config
from leadsync.fields import FIELDS, Kind, json_size, php_json
from leadsync.mapper import map_chunk, plan_columns
from leadsync.model import MappedRow
from leadsync.reader import open_table
from leadsync.rules import check_lead_id, check_payload
from leadsync.validator import scan_ids, validate_rows
from tests.conftest import write_csv, write_xlsx


def validated(path: Path, config: Config | None = None) -> list[MappedRow]:
    config = config or Config()
    table = open_table(path)
    plan = plan_columns(table.headers, config)
    dups = scan_ids(table, plan).duplicates
    rows = []
    for chunk in table.chunks(7):  # small chunks: duplicates must be found across chunks
        got = map_chunk(chunk, plan, config)
        validate_rows(got, plan, config, dups)
        rows.extend(got)
    return rows


def codes(row: MappedRow) -> list[tuple[str | None, str]]:
    return [(p.field, p.code) for p in row.problems]


def named(**fields: Any) -> dict[str, Any]:
    return {"first_name": "Ann", "last_name": "Lee", **fields}


@pytest.mark.parametrize("fname", ["first_name", "last_name"])
def test_names_are_1_to_50_characters(tmp_path: Path, fname: str) -> None:
    other = "last_name" if fname == "first_name" else "first_name"
    path = write_xlsx(
        tmp_path / "a.xlsx",
        [
            ["id", fname, other],
            [1, "é" * 50, "x"],
            [2, "é" * 51, "x"],
            [3, "a", "x"],
        ],
    )
    rows = validated(path)
    assert codes(rows[0]) == []
    assert codes(rows[1]) == [(fname, "too_long")]
    assert rows[1].problems[0].message == f"{fname} has 51 characters; at most 50 allowed"
    assert rows[1].problems[0].column == fname and rows[1].problems[0].column_index == 1
    assert codes(rows[2]) == []


@pytest.mark.parametrize("fname", ["address", "postcode", "advert_address", "advert_postcode"])
def test_addresses_are_at_most_255_characters(tmp_path: Path, fname: str) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "first_name", "last_name", fname],
            ["1", "A", "B", "ü" * 255],
            ["2", "A", "B", "ü" * 256],
        ],
        encoding="utf-8-sig",
    )
    rows = validated(path)
    assert codes(rows[0]) == []
    assert codes(rows[1]) == [(fname, "too_long")]


def test_names_are_required_unless_relaxed(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [["id", "status"], ["1", "New"]])
    [row] = validated(path)
    assert codes(row) == [("first_name", "required"), ("last_name", "required")]
    assert row.problems[0].column is None  # no column to point at
    [relaxed] = validated(path, Config(require_names=False))
    assert codes(relaxed) == []


def _questionnaire_of_size(target: int) -> list[list[str]]:
    """A questionnaire whose PHP-style JSON is exactly ``target`` bytes, with non-ASCII text."""
    pair = [["Où?", ""]]
    base = json_size(pair)
    answer = "é" * ((target - base) // 6)  # each é is \u00e9: 6 bytes
    answer += "a" * (target - json_size([["Où?", answer]]))
    result = [["Où?", answer]]
    assert json_size(result) == target
    return result


@pytest.mark.parametrize(("size", "ok"), [(2048, True), (2049, False)])
def test_questionnaire_json_limit_counts_escaped_bytes(tmp_path: Path, size: int, ok: bool) -> None:
    q = _questionnaire_of_size(size)
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "first_name", "last_name", "questionnaire"],
            ["1", "A", "B", json.dumps(q)],
        ],
    )
    [row] = validated(path)
    assert row.payload["questionnaire"] == q
    assert codes(row) == ([] if ok else [("questionnaire", "too_large")])
    # UTF-8 would count far fewer bytes: the conservative measure is what matters
    assert len(json.dumps(q, ensure_ascii=False).encode()) < size


@pytest.mark.parametrize(("size", "ok"), [(1024, True), (1025, False)])
def test_meta_json_limit(size: int, ok: bool) -> None:
    meta = {"k": ""}
    meta["k"] = "/" * ((size - json_size(meta)) // 2)  # each / is sent as \/
    meta["k"] += "x" * (size - json_size(meta))
    assert json_size(meta) == size
    problems = check_payload(named(meta=meta))
    assert problems == ({} if ok else {"meta": [("too_large", problems["meta"][0][1])]})


def test_php_json_escapes_like_json_encode() -> None:
    assert php_json({"a/b": "é😀"}) == '{"a\\/b":"\\u00e9\\ud83d\\ude00"}'
    assert json_size(["😀"]) == 16


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ([["only one"]], "questionnaire_item"),
        ([["q", "a", "extra"]], "questionnaire_item"),
        ([["q", 5]], "questionnaire_item"),
        ({"q": "a"}, "wrong_type"),
        ([["q", " "]], "questionnaire_item"),
    ],
)
def test_questionnaire_items_are_exactly_two_strings(value: Any, code: str) -> None:
    assert [c for c, _ in check_payload(named(questionnaire=value))["questionnaire"]] == [code]


def test_meta_values_must_be_strings() -> None:
    assert check_payload(named(meta={"n": 5}))["meta"][0][0] == "meta_value"
    assert check_payload(named(meta=["x"]))["meta"][0][0] == "wrong_type"


def test_strict_types_as_the_server_sees_them() -> None:
    problems = check_payload(
        named(
            office_id=375.0,
            gdpr_checkbox="yes",
            status=5,
            next_action_date="12/07/2025",
            nonsense="x",
            address=None,
        )
    )
    assert {k: [c for c, _ in v] for k, v in problems.items()} == {
        "office_id": ["wrong_type"],
        "gdpr_checkbox": ["wrong_type"],
        "status": ["wrong_type"],
        "next_action_date": ["invalid_date"],
        "nonsense": ["unknown_field"],
        "address": ["null"],
    }


def test_office_must_belong_to_the_account_when_offices_are_known() -> None:
    assert check_payload(named(office_id=1213), office_ids={1213}) == {}
    assert (
        check_payload(named(office_id=99), office_ids={1213})["office_id"][0][0] == "unknown_office"
    )


def test_status_allow_list(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "first_name", "last_name", "status"],
            ["1", "A", "B", "New"],
            ["2", "A", "B", "Nwe"],
        ],
    )
    rows = validated(path, Config(statuses=("New", "Lost")))
    assert codes(rows[0]) == [] and codes(rows[1]) == [("status", "status_not_allowed")]


def test_duplicate_ids_are_flagged_on_every_row_across_chunks(tmp_path: Path) -> None:
    body = [[str(i), "A", "B"] for i in range(1, 21)]
    body[15][0] = " 3 "  # same lead as row 4 once trimmed, in another chunk
    body[18][0] = "3"
    path = write_csv(tmp_path / "a.csv", [["id", "first_name", "last_name"], *body])
    rows = validated(path)
    flagged = [r.row for r in rows if (None, "id_duplicate") in codes(r)]
    assert flagged == [4, 17, 20]
    assert rows[2].problems[0].column == "id"


def test_repeated_ids_are_found_among_numbers_and_texts_alike(tmp_path: Path) -> None:
    # whole numbers are compared as numbers, other ids as texts: an id that reads as a
    # number once trimmed (1001.0, " 1001 ") is still the same lead; 007 is not 7
    ids = ["1001", "abc", " 1001.0 ", "abc", "007", "7", "", "", "12", "x"]
    body = [[v, "A", "B"] for v in ids]
    path = write_csv(tmp_path / "a.csv", [["id", "first_name", "last_name"], *body])
    table = open_table(path)
    scan = scan_ids(table, plan_columns(table.headers, Config()), chunk_rows=3)
    assert scan.rows == len(ids) and scan.duplicates == {"1001", "abc"}


@pytest.mark.parametrize(
    "lead_id", ["../1", "1/2", "1?x=y", "1#", "12 34", "１２", "a..b", "-1", "é"]
)
def test_lead_ids_must_be_plain_tokens(lead_id: str) -> None:
    result = check_lead_id(lead_id)
    assert result is not None and result[0] == "id_invalid"


@pytest.mark.parametrize("lead_id", ["1001", "abc-123", "L_9", "0007", "a1.b2"])
def test_plain_lead_ids(lead_id: str) -> None:
    assert check_lead_id(lead_id) is None


def test_blank_id_and_blank_rows(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["id", "first_name", "last_name", "Notes"],
            ["", "A", "B", ""],
            ["", "", "", "unmapped text"],
        ],
    )
    rows = validated(path)
    assert codes(rows[0]) == [(None, "id_missing")]
    assert rows[1].blank and rows[1].problems == []


# -- properties ---------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=120)
payloads = st.fixed_dictionaries(
    {"first_name": text, "last_name": text},
    optional={
        "address": text,
        "office_id": st.integers(-5, 10**6),
        "gdpr_checkbox": st.booleans(),
        "questionnaire": st.lists(st.lists(text, min_size=2, max_size=2), min_size=1, max_size=30),
        "meta": st.dictionaries(text, text, min_size=1, max_size=20),
    },
)


@settings(max_examples=300)
@given(payload=payloads)
def test_an_accepted_payload_is_within_every_limit(payload: dict[str, Any]) -> None:
    if check_payload(payload):
        return
    encoded = php_json(payload)
    json.loads(encoded)
    for f in FIELDS:
        if f.name not in payload:
            continue
        if f.max_json_bytes is not None:
            assert len(php_json(payload[f.name])) <= f.max_json_bytes
            # any other common encoding is no larger than the PHP one
            assert (
                len(json.dumps(payload[f.name], ensure_ascii=False, separators=(",", ":")).encode())
                <= f.max_json_bytes
            )
        if f.kind is Kind.STRING and f.max_chars:
            assert 1 <= len(payload[f.name]) <= f.max_chars


@given(payload=payloads)
def test_an_over_limit_questionnaire_is_always_rejected(payload: dict[str, Any]) -> None:
    q = payload.get("questionnaire")
    if q is not None and json_size(q) > 2048:
        assert "too_large" in [c for c, _ in check_payload(payload)["questionnaire"]]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("A\x00nn", False),
        ("Bell\x07", False),
        ("x\x7f", False),
        ("1 High St\nBath", True),
        ("tab\there", True),
    ],
)
def test_control_characters_are_refused(text: str, ok: bool) -> None:
    problems = check_payload(named(address=text))
    assert (problems == {}) is ok
    if not ok:
        assert problems["address"][0][0] == "control_character"


def test_excel_errors_saved_into_a_csv_are_invalid_not_sent(tmp_path: Path) -> None:
    # Excel writes an error cell into a CSV as its text: "#N/A" must not become a name
    header = ["id", "first_name", "last_name", "status", "questionnaire: Budget?", "meta: src"]
    rows = [
        ["1001", "#N/A", "Lee", "New", "", ""],  # a name that is an error: one problem
        ["1002", "Ann", "Lee", " #value! ", "#REF!", "#DIV/0!"],  # any case, trimmed
        ["#NAME?", "Ann", "Lee", "", "", ""],
        ["1004", "Ann", "#3 Dock Rd", "#1", "#", "#hashtag"],  # text that starts with #
    ]
    got = validated(write_csv(tmp_path / "e.csv", [header, *rows]))
    assert [codes(r) for r in got] == [
        [("first_name", "excel_error")],  # not also "required": said once
        [("status", "excel_error"), ("questionnaire", "excel_error"), ("meta", "excel_error")],
        [(None, "excel_error")],
        [],
    ]
    assert got[1].problems[0].message == (
        "the cell shows the Excel error #VALUE!: fix the formula behind it, or clear the cell"
    )
    assert got[3].payload["last_name"] == "#3 Dock Rd"


def test_a_csv_id_written_through_a_float_is_the_whole_number(tmp_path: Path) -> None:
    # 1001.0 is what a script's float export makes of lead 1001 (a workbook's 1001.0 is
    # normalised by the reader): it is lead 1001, and the same lead as "1001" on another row
    rows = [["id", "first_name", "last_name"]]
    rows += [["1001.0", "A", "B"], ["1002", "A", "B"], [" 1002.00 ", "A", "B"]]
    rows += [["A.77", "A", "B"], ["1.5", "A", "B"]]
    got = validated(write_csv(tmp_path / "ids.csv", rows))
    assert [(r.lead_id, codes(r)) for r in got] == [
        ("1001", []),
        ("1002", [(None, "id_duplicate")]),
        ("1002", [(None, "id_duplicate")]),
        ("A.77", []),
        ("1.5", []),  # not a whole number: an id as written
    ]


_FORM_CELLS = [
    "ann@example.com", " ann@example.com ", "a b@c.com", "a@b", "a@b.c.d", "ａ@b.co",
    "a\u00a0b@c.com", "a\x0bb@c.com", "x@y.z\u2028", "@b.co", "a@@b.co", "a@.co",
    "07700 900123", "+44 (0)20 7946-0958", "12", "1234567890123456", "٠٧٧٠٠٩٠٠١٢٣",
    "https://x.co", "HTTP://X.CO/a b", "http://x", "ftp://x.co", "Https://ä.de/ü?q=1#f",
    "https://a.b/\u00a0", "", " ", "\u3000",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.sampled_from("ab.@ +-()/0123456789:hHtTpPsS?#\u00a0\x0b\x85\u2028é"),
                max_size=24),
        max_size=20,
    )
)  # fmt: skip
def test_a_contact_form_reads_alike_in_a_cell_and_a_column(cells: list[str]) -> None:
    """An email, phone or web address is judged by one pattern each, read by Python's re
    for one cell (the row-by-row path, the sandbox) and by RE2 for a column (the columnar
    path): both must say the same of every text."""
    import pyarrow as pa

    from leadsync.rules import _has_form, forms_ok

    texts = [*_FORM_CELLS, *cells]
    for form in ("email", "phone", "url"):
        one = [_has_form(t, form) for t in texts]
        column = forms_ok(pa.array(texts, pa.string()), form).tolist()
        assert one == column, form
    assert any(_has_form(t, "url") for t in texts) and not all(_has_form(t, "url") for t in texts)


def test_remembered_verdicts_keep_values_of_another_type_or_rule_apart() -> None:
    # each verdict is remembered by value: True and 1, 1 and 1.0, a text and a number,
    # one status list and another must still be told apart
    from leadsync.rules import check_payload

    def codes(payload: dict[str, Any], **rules: Any) -> list[str]:
        found = check_payload(payload, require_names=False, **rules)
        return [code for problems in found.values() for code, _ in problems]

    for _ in range(2):  # the second time from what was remembered
        assert codes({"gdpr_checkbox": True}) == []
        assert codes({"gdpr_checkbox": 1}) == ["wrong_type"]
        assert codes({"office_id": 1}) == []
        assert codes({"office_id": 1.0}) == ["wrong_type"]
        assert codes({"office_id": True}) == ["wrong_type"]
        assert codes({"first_name": "1"}) == []
        assert codes({"first_name": 1}) == ["wrong_type"]
        assert codes({"status": "Lost"}, statuses=("New", "Lost")) == []
        assert codes({"status": "Lost"}, statuses=("New",)) == ["status_not_allowed"]
        assert codes({"office_id": 7}, office_ids=frozenset({7})) == []
        assert codes({"office_id": 7}, office_ids=frozenset({8})) == ["unknown_office"]
        assert codes({"office_id": 7}, office_ids={8}) == ["unknown_office"]  # a set: unhashable
        assert codes({"meta": {"a": "x"}}) == []
        assert codes({"meta": {"a": 1}}) == ["meta_value"]
        assert codes({"questionnaire": [["q", "a"]]}) == []
        assert codes({"questionnaire": [["q", ""]]}) == ["questionnaire_item"]
