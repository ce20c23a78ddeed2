"""`leadsync template`: headers from the field catalogue, usable as input as is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from openpyxl import load_workbook

from leadsync.fields import FIELDS, UPDATE_FIELDS
from leadsync.template import template_columns, template_csv
from tests.conftest import ROOT, read_csv_report

Cli = Callable[..., Result]


def test_every_catalogue_field_has_a_column() -> None:
    headers = [c[0] for c in template_columns()]
    for f in UPDATE_FIELDS:
        assert any(h == f.name or h.startswith(f"{f.name}:") for h in headers), f.name
    assert headers[0] == "id"
    assert "type" not in headers and "source" not in headers  # create-only fields


def test_the_create_template_has_every_field_a_new_lead_takes_and_its_row_creates(
    cli: Cli, tmp_path: Path
) -> None:
    headers = [c[0] for c in template_columns(create=True)]
    for f in FIELDS:
        assert any(h == f.name or h.startswith(f"{f.name}:") for h in headers), f.name
    assert headers[:5] == ["id", "type", "title", "first_name", "last_name"]
    path = tmp_path / "new.csv"
    assert cli("template", "--create", "-o", path).exit_code == 0
    # as written, the example row is refused (its id is EXAMPLE) ...
    assert cli("validate", path, "--create", "--report-dir", tmp_path / "a").exit_code == 1
    # ... and with the id cleared it is a valid new lead
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[1].startswith("EXAMPLE,")
    path.write_text(lines[0] + "\n" + lines[1].removeprefix("EXAMPLE") + "\n", encoding="utf-8")
    result = cli("validate", path, "--create", "--report-dir", tmp_path / "b")
    assert result.exit_code == 0, read_csv_report(tmp_path / "b" / "failures.csv")


def test_xlsx_template_explains_each_column_and_validates(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    assert cli("template", "-o", path).exit_code == 0
    book = load_workbook(path)
    leads = book["Leads"]
    for cell in leads[1]:
        assert cell.comment is not None and cell.comment.text
    assert [r[0].value for r in book["Columns"].iter_rows(min_row=2, max_row=4)] == [
        "id",
        "first_name",
        "last_name",
    ]
    # the example row is valid except for its id, which says to delete it
    result = cli("validate", path, "--report-dir", tmp_path / "out")
    assert result.exit_code == 1
    [problem] = read_csv_report(tmp_path / "out" / "failures.csv")
    assert (problem["code"], problem["message"]) == (
        "id_example",
        "this is the template's example row: delete it",
    )


def test_csv_template_to_stdout_and_refusing_to_overwrite(cli: Cli, tmp_path: Path) -> None:
    result = cli("template", "--format", "csv", "-o", "-")
    assert result.stdout_bytes == template_csv().encode("utf-8")
    path = tmp_path / "t.csv"
    assert cli("template", "-o", path).exit_code == 0
    assert path.read_bytes().decode("utf-8-sig") == template_csv()
    again = cli("template", "-o", path)
    assert again.exit_code == 2
    assert (
        again.stderr
        == f"leadsync: error: {path} already exists: choose another -o PATH or add --force\n"
    )
    assert cli("template", "-o", path, "--force").exit_code == 0


def test_shipped_templates_match_the_catalogue() -> None:
    shipped = ROOT / "templates" / "leads-template.csv"
    assert shipped.read_bytes().decode("utf-8-sig") == template_csv()
    book = load_workbook(ROOT / "templates" / "leads-template.xlsx")
    assert [c.value for c in book["Leads"][1]] == [c[0] for c in template_columns()]
