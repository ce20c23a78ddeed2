"""Mapping files that cannot go silently wrong (issue 15): a [columns] key that matches no
header, or a [values] table for a field no column carries, is an error naming the key
and the closest header; --match-by's contact columns can be mapped like any other."""

from __future__ import annotations

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
    from leadsync.validator import LEAD_ID_RULE

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
