"""Mapping files that cannot go silently wrong (issue 15): a [columns] key that matches no
header, or a [values] table for a field no column carries, is an error naming the key
and the closest header; --match-by's contact columns can be mapped like any other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import write_csv

HEADER = ["Lead Ref", "Forename", "Surname", "Email Address", "Stage"]
ROW = ["1001", "Ann", "Lee", "ann@example.com", "new"]


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "map.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _export(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "in.csv", [HEADER, ROW])


def _refused(tmp_path: Path, cli: Any, text: str) -> tuple[Path, str]:
    """Validate the export with the mapping ``text``: it must exit 2; (mapping, stderr)."""
    mapping = _mapping(tmp_path, text)
    result = cli("validate", _export(tmp_path), "--mapping", mapping, "--report-dir", tmp_path)
    assert result.exit_code == 2
    return mapping, result.stderr


BASE = '[columns]\n"Lead Ref" = "id"\n"Forename" = "first_name"\n"Surname" = "last_name"\n'


def test_a_misspelt_column_key_is_an_error_naming_the_closest_header(
    tmp_path: Path, cli: Any
) -> None:
    """Before, "Forname" matched nothing and first names were silently not sent."""
    mapping, stderr = _refused(
        tmp_path,
        cli,
        '[columns]\n"Lead Ref" = "id"\n"Forname" = "first_name"\n"Surname" = "last_name"\n',
    )
    assert stderr == (
        f"leadsync: error: mapping file {mapping}: [columns] 'Forname' matches no column of "
        "the file; did you mean 'Forename'? (list it in [rules] optional_columns if the "
        "file may lack it)\n"
    )


def test_a_key_listed_as_optional_or_mapped_to_ignore_may_be_missing(
    tmp_path: Path, cli: Any
) -> None:
    mapping = _mapping(
        tmp_path,
        BASE + '"Notes" = "ignore"\n"Budget" = "questionnaire: Budget?"\n'
        '[rules]\noptional_columns = ["Budget"]\n',
    )
    result = cli(
        "validate", _export(tmp_path), "--mapping", mapping, "--report-dir", tmp_path / "o"
    )
    assert result.exit_code == 0, result.stderr


def test_a_value_map_for_a_field_the_file_lacks_is_an_error(tmp_path: Path, cli: Any) -> None:
    mapping, stderr = _refused(tmp_path, cli, BASE + "[values.office_id]\nbristol = 1213\n")
    assert stderr == (
        f"leadsync: error: mapping file {mapping}: [values.office_id] gives values for "
        "office_id, but no column of the file maps to office_id: map one in [columns], or "
        "remove the table\n"
    )


def test_match_by_columns_can_be_mapped_and_are_not_listed_as_unsent(
    tmp_path: Path, cli: Any
) -> None:
    """ "Email Address" = "email" used to be refused ("not an API field")."""
    src = write_csv(
        tmp_path / "in.csv",
        [["Forename", "Surname", "Contact", "Stage"], ["Ann", "Lee", "ann@example.com", "New"]],
    )
    mapping = _mapping(
        tmp_path,
        '[columns]\n"Forename" = "first_name"\n"Surname" = "last_name"\n"Contact" = "email"\n',
    )
    result = cli(
        "validate", src, "--mapping", mapping, "--match-by", "email", "--report-dir", tmp_path / "o"
    )
    assert result.exit_code == 0, result.stderr
    assert "Contact" not in result.stdout  # not among the columns not sent
    assert "'Stage'" in result.stdout  # which is


def test_a_row_with_only_a_bad_id_is_invalid_on_both_paths(tmp_path: Path) -> None:
    """It was skipped_blank, and its id went unreported. A row with a good id and
    nothing else is still skipped_blank: there is nothing to send."""
    import leadsync
    from leadsync.rules import LEAD_ID_RULE

    src = write_csv(
        tmp_path / "in.csv",
        [
            ["id", "first_name", "last_name"],
            ["1001", "Ann", "Lee"],
            ["1002", "", ""],
            ["bad id!", "", ""],
            ["", "", ""],
        ],
    )
    for fast in (True, False):
        rows = {r.row: r for r in leadsync.mapped_rows(src, fast=fast)}
        assert [rows[n].blank for n in (2, 3, 4, 5)] == [False, True, False, True], fast
        [problem] = rows[4].problems
        assert problem.code == "id_invalid"
        assert problem.message == f"lead id 'bad id!' is not a plain id ({LEAD_ID_RULE})"


def test_two_columns_with_one_header_are_told_apart_by_letter(tmp_path: Path, cli: Any) -> None:
    """Mapping "Id" = "ignore" used to drop both: the letter names one of them, as the
    error message says to."""
    src = write_csv(
        tmp_path / "in.csv",
        [["Id", "first_name", "last_name", "Id"], ["1001", "Ann", "Lee", "CRM-7"]],
    )
    refused = cli("validate", src, "--report-dir", tmp_path / "o")
    assert refused.exit_code == 2
    assert 'put "column D" = "ignore" under [columns]' in refused.stderr
    mapping = _mapping(tmp_path, '[columns]\n"column D" = "meta: crm_id"\n')
    result = cli("validate", src, "--mapping", mapping, "--report-dir", tmp_path / "o2")
    assert result.exit_code == 0, result.stderr
    import leadsync
    from leadsync.config import load_mapping

    [row] = list(leadsync.mapped_rows(src, load_mapping(mapping)))
    assert row.lead_id == "1001" and row.payload["meta"] == {"crm_id": "CRM-7"}


def test_a_letter_key_beyond_the_last_column_matches_nothing(tmp_path: Path, cli: Any) -> None:
    _, stderr = _refused(tmp_path, cli, BASE + '"column Z" = "ignore"\n"column Y" = "status"\n')
    assert "[columns] 'column Y' matches no column of the file" in stderr


def test_a_full_name_column_is_split_into_first_and_last_name(tmp_path: Path) -> None:
    import leadsync
    from leadsync.config import load_mapping

    src = write_csv(
        tmp_path / "zoho.csv",
        [
            ["Lead Id", "Lead Name", "Lead Status"],
            ["1", "Ann Marie Lee", "New"],
            ["2", "  Bo   Ray  ", "New"],
            ["3", "Cher", "New"],
            ["4", "", "New"],
        ],
    )
    mapping = _mapping(
        tmp_path,
        '[columns]\n"Lead Id" = "id"\n"Lead Name" = "full_name"\n"Lead Status" = "status"\n',
    )
    for fast in (True, False):
        rows = {r.row: r for r in leadsync.mapped_rows(src, load_mapping(mapping), fast=fast)}
        assert rows[2].payload["first_name"] == "Ann Marie"
        assert rows[2].payload["last_name"] == "Lee" and not rows[2].problems
        assert (rows[3].payload["first_name"], rows[3].payload["last_name"]) == ("Bo", "Ray")
        # one word: a first name only, and the last name the API requires is missing
        assert rows[4].payload["first_name"] == "Cher" and "last_name" not in rows[4].payload
        assert [p.field for p in rows[4].problems] == ["last_name"]
        assert [p.field for p in rows[5].problems] == ["first_name", "last_name"]


def test_a_full_name_written_last_comma_first(tmp_path: Path) -> None:
    import leadsync
    from leadsync.config import load_mapping

    src = write_csv(
        tmp_path / "in.csv",
        [["id", "Name", "First Name"], ["1", "Lee, Ann", ""], ["2", "Ray, Bo", "Robert"]],
    )
    mapping = _mapping(
        tmp_path, '[columns]\n"Name" = "full_name"\n[rules]\nname_order = "last, first"\n'
    )
    rows = {r.row: r for r in leadsync.mapped_rows(src, load_mapping(mapping))}
    assert (rows[2].payload["first_name"], rows[2].payload["last_name"]) == ("Ann", "Lee")
    # a first-name column of its own wins over the split
    assert (rows[3].payload["first_name"], rows[3].payload["last_name"]) == ("Robert", "Ray")


def _readme_mapping(tmp_path: Path, heading: str) -> Path:
    """The TOML block that follows ``heading`` in the README, as a user would copy it."""
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(heading, 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    return _mapping(tmp_path, block)


def _readme_example(
    tmp_path: Path, cli: Any, heading: str, rows: list[list[str]], match_by: str
) -> Any:
    """Validate ``rows`` with the README's mapping under ``heading``: the one row, mapped."""
    import leadsync
    from leadsync.config import load_mapping

    src = write_csv(tmp_path / "export.csv", rows)
    mapping = _readme_mapping(tmp_path, heading)
    result = cli(
        "validate", src, "--mapping", mapping, "--match-by", match_by, "--report-dir", tmp_path
    )
    assert result.exit_code == 0, result.stderr
    [row] = list(leadsync.mapped_rows(src, load_mapping(mapping).with_flags(match_by=match_by)))
    return row


def test_the_readmes_linkedin_example_works_as_written(tmp_path: Path, cli: Any) -> None:
    row = _readme_example(
        tmp_path,
        cli,
        "**A LinkedIn lead-gen form export**",
        [
            ["Lead Id", "First Name", "Last Name", "Email Address", "Phone Number", "Company",
             "Job Title", "Submitted At"],
            ["urn:li:lead:77", "Ann", "Lee", "ann@example.com", "+44 7700 900123", "Acme",
             "Director", "2025-07-12 10:00"],
        ],
        "email",
    )  # fmt: skip
    assert row.match == "ann@example.com" and row.lead_id is None
    assert row.payload == {
        "first_name": "Ann",
        "last_name": "Lee",
        "meta": {"company": "Acme", "job_title": "Director"},
    }


def test_the_readmes_zoho_example_works_as_written(tmp_path: Path, cli: Any) -> None:
    row = _readme_example(
        tmp_path,
        cli,
        "**A Zoho CRM leads export**",
        [
            ["Lead Name", "Email", "Phone", "Lead Source", "Lead Status"],
            ["Ann Marie Lee", "ann@example.com", "07700 900123", "Website", "Not Contacted"],
        ],
        "phone",
    )
    assert row.match == "07700 900123"
    assert row.payload == {
        "first_name": "Ann Marie",
        "last_name": "Lee",
        "status": "New",
        "utm_source": "Website",
    }


def test_a_header_nearly_named_for_a_field_is_pointed_out(tmp_path: Path, cli: Any) -> None:
    """``frist name`` and ``Satus`` are left out of every row: the run says which field
    each looks like and how to map it; a field some column sends already (``Address 2``
    beside ``Address``), a create's ``Email`` on an update, and unrelated headers are not
    called misspelt."""
    src = write_csv(
        tmp_path / "in.csv",
        [
            ["id", "frist name", "last_name", "Address", "Address 2", "Satus", "Notes", "Email"],
            ["1001", "Ann", "Lee", "1 High St", "Flat 2", "New", "n", "ann@example.com"],
        ],
    )
    result = cli("validate", src, "--report-dir", tmp_path / "o", "--json")
    notices = json.loads(result.stdout)["notices"]
    assert notices == [
        "column 'frist name' is not sent; if it holds first_name, name the header "
        """'first_name', or map it in a mapping file ([columns] "frist name" = "first_name")""",
        "column 'Satus' is not sent; if it holds status, name the header 'status', or map "
        """it in a mapping file ([columns] "Satus" = "status")""",
    ]
    assert "leadsync: note: column 'Satus' is not sent" in result.stderr
    mapping = _mapping(tmp_path, '[columns]\n"frist name" = "first_name"\nSatus = "status"\n')
    mapped = cli("validate", src, "--mapping", mapping, "--report-dir", tmp_path / "m", "--json")
    assert mapped.exit_code == 0
    assert json.loads(mapped.stdout)["notices"] == []
