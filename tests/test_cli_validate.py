"""`leadsync validate` end to end: exact exit codes and messages, the sample export."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import Result

from leadsync import __version__
from tests.conftest import SAMPLE, read_csv_report, write_csv, write_xlsx

Cli = Callable[..., Result]


def verdicts(out: Path) -> list[tuple[str, str, str, str]]:
    fails = [
        (r["row"], r["outcome"], r["field"], r["code"])
        for r in read_csv_report(out / "failures.csv")
    ]
    oks = [
        (r["row"], r["outcome"], r["fields_sent"], "")
        for r in read_csv_report(out / "successes.csv")
    ]
    return sorted(fails + oks)


def test_sample_xlsx_and_csv_give_the_same_verdicts(cli: Cli, tmp_path: Path) -> None:
    got = {}
    for name in ("leads.xlsx", "leads.csv"):
        out = tmp_path / name
        result = cli("validate", SAMPLE / name, "--report-dir", out)
        assert result.exit_code == 1, result.output
        assert result.stdout.splitlines()[0].startswith(f"validate: {name}")
        assert "  invalid               8" in result.stdout
        assert (
            "columns not sent (unmapped; map or 'ignore' them in a mapping file): 'Notes'"
            in result.stdout
        )
        assert sorted(p.name for p in out.iterdir()) == [
            "failures.csv",
            "report.xlsx",
            "successes.csv",
            "summary.json",
        ]
        got[name] = verdicts(out)
    assert got["leads.xlsx"] == got["leads.csv"]
    failed = {(row, code) for row, outcome, _, code in got["leads.csv"] if outcome == "invalid"}
    assert failed == {
        ("8", "required"),
        ("21", "not_whole_number"),
        ("35", "invalid_date"),
        ("49", "invalid_boolean"),
        ("51", "id_duplicate"),
        ("74", "id_duplicate"),
        ("90", "too_long"),
        ("152", "id_missing"),
    }


def test_json_flag_prints_the_summary_json(cli: Cli, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [["id", "first_name", "last_name"], ["1", "A", "B"]])
    result = cli("validate", src, "--report-dir", tmp_path / "out", "--json")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == json.loads((tmp_path / "out" / "summary.json").read_text())
    assert printed["outcomes"]["valid"] == 1


def test_default_report_dir_is_per_run(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    src = write_csv(tmp_path / "a.csv", [["id", "first_name", "last_name"], ["1", "A", "B"]])
    result = cli("validate", src, "--json")
    run_id = json.loads(result.stdout)["run_id"]
    assert (tmp_path / "leadsync-reports" / run_id / "summary.json").exists()


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, [], "leadsync: error: file not found: {dir}/nope.csv"),
        (
            "csv",
            ["--sheet", "x"],
            "leadsync: error: --sheet does not apply to a.csv: it is a text file",
        ),
        (
            "xlsx",
            ["--sheet", "Nope"],
            "leadsync: error: no sheet named 'Nope' in a.xlsx; its sheets are: Leads",
        ),
        ("corrupt", [], "leadsync: error: a.xlsx is not a readable Excel workbook"),
        (
            "noid",
            [],
            "leadsync: error: no lead id column: add a column headed 'id', 'lead_id' or 'Lead ID'",
        ),
        (
            "csv",
            ["--mapping", "{dir}/missing.toml"],
            "leadsync: error: mapping file not found: {dir}/missing.toml",
        ),
        (
            "csv",
            ["--mapping", "{dir}/bad.toml"],
            "leadsync: error: mapping file {dir}/bad.toml is not valid TOML",
        ),
        (
            "csv",
            ["--mapping", "{dir}/unknown.toml"],
            "leadsync: error: mapping file {dir}/unknown.toml: unknown section(s) colums",
        ),
        (
            "csv",
            ["--mapping", "{dir}/target.toml"],
            "leadsync: error: mapping file {dir}/target.toml: [columns] 'A' maps to 'frist_name', which is not an API field",
        ),
    ],
)
def test_user_mistakes_get_one_line_and_exit_2(
    cli: Cli, tmp_path: Path, make: str | None, args: list[str], message: str
) -> None:
    (tmp_path / "bad.toml").write_text("[columns\n", encoding="utf-8")
    (tmp_path / "unknown.toml").write_text("[colums]\n", encoding="utf-8")
    (tmp_path / "target.toml").write_text('[columns]\nA = "frist_name"\n', encoding="utf-8")
    if make == "csv":
        src = write_csv(tmp_path / "a.csv", [["id", "first_name"], ["1", "A"]])
    elif make == "xlsx":
        src = write_xlsx(tmp_path / "a.xlsx", [["id", "first_name"], [1, "A"]])
    elif make == "corrupt":
        src = tmp_path / "a.xlsx"
        src.write_bytes(b"PK\x03\x04garbage")
    elif make == "noid":
        src = write_csv(tmp_path / "a.csv", [["first_name"], ["A"]])
    else:
        src = tmp_path / "nope.csv"
    result = cli("validate", src, *[a.format(dir=tmp_path) for a in args])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message.format(dir=tmp_path))
    assert "Traceback" not in result.stderr
    # with --json a script still reads one JSON document on stdout, saying the same
    as_json = cli("validate", src, *[a.format(dir=tmp_path) for a in args], "--json")
    assert as_json.exit_code == 2
    assert as_json.stderr == result.stderr
    printed = json.loads(as_json.stdout)
    assert printed["command"] == "validate" and printed["exit_code"] == 2
    assert "leadsync: error: " + printed["error"] == lines[0]


def test_all_valid_exits_0(cli: Cli, tmp_path: Path) -> None:
    src = write_csv(
        tmp_path / "a.csv", [["Lead ID", "First Name", "Last Name"], ["1", "A", "B"], ["", "", ""]]
    )
    result = cli("validate", src, "--report-dir", tmp_path / "o")
    assert result.exit_code == 0
    assert "skipped_blank" in result.stdout


def test_version_and_help(cli: Cli) -> None:
    shown = cli("--version").stdout.splitlines()
    assert shown[0] == f"leadsync, version {__version__}"
    assert shown[1].startswith("Python 3.") and "pyarrow " + version("pyarrow") in shown
    help_text = cli("--help").stdout
    for command in ("validate", "template"):
        assert command in help_text
    assert "Example:" in cli("validate", "--help").stdout


def test_module_entry_point_runs_as_a_real_process(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [["id", "first_name", "last_name"], ["1", "A", "x" * 51]])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadsync",
            "validate",
            str(src),
            "--report-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "too_long 1" in proc.stdout
    assert proc.stderr == ""


def test_a_wide_export_names_a_dozen_unmapped_columns_not_thousands(
    cli: Cli, tmp_path: Path
) -> None:
    extra = [f"col {i}" for i in range(500)]
    src = write_csv(tmp_path / "wide.csv", [["id", "first_name", "last_name", *extra]])
    result = cli("validate", src, "--report-dir", tmp_path / "o", "--json")
    assert json.loads(result.stdout)["unmapped_columns"] == extra  # the file has them all
    text = cli("validate", src, "--report-dir", tmp_path / "o2")
    listed = ", ".join(repr(c) for c in extra[:12])
    assert (
        f"columns not sent (unmapped; map or 'ignore' them in a mapping file): {listed} "
        "and 488 more (all in summary.json)\n"
    ) in text.stdout


def test_validate_checks_a_file_without_ids_for_match_by(cli: Cli, tmp_path: Path) -> None:
    rows = [["Email", "first_name", "last_name"], ["a@x.test", "A", "B"], ["", "C", "D"]]
    src = write_csv(tmp_path / "a.csv", rows)
    without = cli("validate", src, "--report-dir", tmp_path / "o1")
    assert without.exit_code == 2 and "no lead id column" in without.stderr
    result = cli("validate", src, "--match-by", "email", "--report-dir", tmp_path / "o2")
    assert result.exit_code == 1  # nothing is looked up: that happens when sending
    [fail] = read_csv_report(tmp_path / "o2" / "failures.csv")
    assert (fail["row"], fail["code"], fail["message"]) == (
        "3",
        "id_missing",
        "the row has neither a lead id nor an email to find the lead by",
    )
    [ok] = read_csv_report(tmp_path / "o2" / "successes.csv")
    assert (ok["row"], ok["outcome"]) == ("2", "valid")
