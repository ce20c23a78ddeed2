"""`leadsync ui` in a real headless Chromium against the real sandbox: upload the sample
workbook, see its invalid rows marked cell by cell, fix the mapping and save it, sync
with live progress, stop a sync, download report.xlsx, retry a run's failures."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadsync.sandbox import SandboxConfig
from tests.conftest import SAMPLE
from tests.uihelp import app_with_sandbox, browser, downloaded, screenshot, wait_for


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    d = browser(tmp_path / "downloads")
    try:
        yield d
    finally:
        d.quit()


def _css(driver: Any, selector: str) -> list[Any]:
    return list(driver.find_elements("css selector", selector))


def _count(driver: Any, outcome: str) -> int:
    found = _css(driver, f'dd[data-outcome="{outcome}"]')
    return int(found[0].text) if found else 0


def _tab_to(driver: Any, target: Any, most: int = 80) -> None:
    """Press Tab until ``target`` has the focus (it must be reachable from the keyboard)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver.find_element("css selector", "body").click()
    for _ in range(most):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if driver.execute_script("return document.activeElement === arguments[0]", target):
            return
    raise AssertionError("the element is not reachable with Tab")


def _upload(driver: Any, server: Any, path: Path) -> None:
    driver.get(server.url)  # the token becomes a cookie; the address loses it
    assert "token=" not in driver.current_url
    driver.find_element("id", "file").send_keys(str(path))
    wait_for(lambda: "/file/" in driver.current_url and _css(driver, "h1"), what="the file page")


def _finished(driver: Any) -> bool:
    # read in the page: htmx swaps the panel every half second (an element found
    # from here may be gone by the time it is asked)
    script = "const p = document.getElementById('progress'); return p && p.dataset.running;"
    return bool(driver.execute_script(script) == "no")


def _js_text(driver: Any, element_id: str) -> str:
    return str(driver.execute_script(f"return document.getElementById('{element_id}').textContent"))


def test_sample_upload_mapping_sync_and_report(tmp_path: Path, driver: Any) -> None:
    from openpyxl import load_workbook

    sample = shutil.copy(SAMPLE / "leads.xlsx", tmp_path / "leads.xlsx")
    faults = SandboxConfig(seed=3, fail_503=0.1, latency=0.005)
    with app_with_sandbox(tmp_path, faults) as (server, sb):
        _upload(driver, server, Path(sample))
        # validation as in Excel: 8 invalid rows, each with its bad cell red
        assert _count(driver, "invalid") == 8
        assert _count(driver, "valid") == 191
        rows = _css(driver, "#rows tbody tr.invalid")
        assert sorted(int(r.get_attribute("data-row")) for r in rows) == [
            8,
            21,
            35,
            49,
            51,
            74,
            90,
            152,
        ]
        bad = _css(driver, "#rows td.bad")
        assert len(bad) == 8
        codes = {b.get_attribute("data-codes").strip() for b in bad}
        assert {
            "required",
            "not_whole_number",
            "invalid_date",
            "invalid_boolean",
            "too_long",
        } <= codes
        row35 = driver.find_element("css selector", 'tr[data-row="35"] td.bad')
        assert row35.text.startswith("31/02/2025")
        tip = row35.find_element("css selector", ".tip")
        assert not tip.is_displayed()
        _tab_to(driver, row35)  # the keyboard reaches it, and focus shows its message
        assert tip.is_displayed() and "invalid_date" in tip.text
        assert "Notes" in driver.find_element("id", "unmapped").text
        screenshot(driver, "1-validation")
        # every row, paged: 50 at a time, pages turned from the keyboard
        driver.find_element("id", "all-rows").click()
        wait_for(lambda: "200 rows" in _js_text(driver, "grid-count"), what="all rows")
        assert len(_css(driver, "#rows tbody tr")) == 50
        from selenium.webdriver.common.keys import Keys

        driver.find_element("id", "next-page").send_keys(Keys.ENTER)
        wait_for(lambda: "page 2 of 4" in _js_text(driver, "grid-count"), what="page 2")
        first = driver.find_element("css selector", "#rows tbody tr")
        assert first.get_attribute("data-row") == "52"

        # the mapping: ignore Notes, and read the consent "maybe" as no
        driver.find_element("link text", "3. Mapping").click()
        wait_for(lambda: _css(driver, "#mapping-form"), what="the mapping page")
        from selenium.webdriver.support.ui import Select

        notes = driver.find_element("css selector", 'select[data-header="Notes"]')
        assert Select(notes).first_selected_option.get_attribute("value") == ""
        first = driver.find_element("css selector", 'select[data-header="First Name"]')
        assert Select(first).first_selected_option.get_attribute("value") == "first_name"
        Select(notes).select_by_value("ignore")
        Select(driver.find_element("id", "value-field-0")).select_by_value("gdpr_checkbox")
        driver.find_element("id", "value-text-0").send_keys("maybe")
        driver.find_element("id", "value-sent-0").send_keys("false")
        screenshot(driver, "2-mapping")
        driver.find_element("id", "apply-mapping").click()
        wait_for(
            lambda: "/mapping" not in driver.current_url and _css(driver, "#codes"), what="re-check"
        )
        assert _count(driver, "invalid") == 7
        assert not _css(driver, "#unmapped")
        driver.find_element("link text", "3. Mapping").click()
        wait_for(lambda: _css(driver, "#save-mapping"), what="the mapping page")
        driver.find_element("id", "save-mapping").click()
        saved = tomllib.loads(downloaded(tmp_path / "downloads", "leads-mapping.toml").read_text())
        assert saved["columns"] == {"Notes": "ignore"}
        assert saved["values"] == {"gdpr_checkbox": {"maybe": False}}

        # the plan, then the sync with live progress
        driver.find_element("link text", "4. Plan and sync").click()
        wait_for(lambda: _css(driver, "#plan-summary"), what="the plan")
        assert "7 invalid rows left out" in driver.find_element("id", "plan-summary").text
        assert len(_css(driver, "#plan tbody tr")) > 192  # old → new, field by field
        driver.find_element("id", "start-sync").click()
        wait_for(lambda: "/jobs/" in driver.current_url, what="the job page")
        wait_for(lambda: _finished(driver), timeout=120, what="the sync's end")
        screenshot(driver, "3-sync-finished")
        stats = sb.stats()
        assert (
            _count(driver, "updated") == stats["applied_requests"] == len(stats["applied"]) == 192
        )
        assert _count(driver, "invalid") == 7
        job = next(iter(server.workspace.jobs.values()))
        assert job.result is not None
        sending = job.result.summary["sending"]
        assert sending["retries"] > 0  # the sandbox's 503s were retried
        assert driver.find_element("id", "retries").text == str(sending["retries"])
        assert driver.find_element("id", "rows-done").text == "200"

        driver.find_element("id", "dl-report-xlsx").click()
        book = load_workbook(downloaded(tmp_path / "downloads", "report.xlsx"), read_only=True)
        sheet = book[book.sheetnames[0]]
        header = next(sheet.iter_rows(max_row=1, values_only=True))
        outcome_at = list(header).index("leadsync outcome")
        outcomes = [r[outcome_at] for r in sheet.iter_rows(min_row=2, values_only=True)]
        assert outcomes.count("updated") == 192 and outcomes.count("invalid") == 7


def test_stop_button_ends_the_sync_like_ctrl_c(tmp_path: Path, driver: Any) -> None:
    sample = shutil.copy(SAMPLE / "leads.xlsx", tmp_path / "leads.xlsx")
    slow = SandboxConfig(seed=1, latency=0.05, rate_limit=20, burst=1)
    with app_with_sandbox(tmp_path, slow) as (server, sb):
        _upload(driver, server, Path(sample))
        driver.find_element("link text", "4. Plan and sync").click()
        wait_for(lambda: _css(driver, "#start-sync"), what="the plan")
        driver.find_element("id", "start-sync").click()
        wait_for(lambda: int(_js_text(driver, "rows-done") or 0) > 5, what="progress")
        screenshot(driver, "4-sync-running")
        driver.execute_script("document.getElementById('stop').click()")
        wait_for(lambda: _finished(driver), timeout=60, what="the stop")
        assert "Exit 3" in driver.find_element("id", "outcome").text
        assert _count(driver, "not_attempted") > 0
        assert _count(driver, "updated") == sb.stats()["applied_requests"]
        driver.find_element("link text", "Past runs").click()
        assert "aborted" in driver.find_element("id", "runs").text


def test_past_run_failures_are_listed_and_retried(tmp_path: Path, driver: Any) -> None:
    sample = shutil.copy(SAMPLE / "leads.xlsx", tmp_path / "leads.xlsx")
    mapping = tmp_path / "mapping.toml"
    mapping.write_text("[sending]\nmax_attempts = 1\nbackoff_initial = 0.01\n")
    faults = SandboxConfig(seed=5, fail_503=0.15)
    with app_with_sandbox(tmp_path, faults, mapping=mapping) as (server, _sb):
        _upload(driver, server, Path(sample))
        driver.find_element("link text", "4. Plan and sync").click()
        wait_for(lambda: _css(driver, "#start-sync"), what="the plan")
        driver.find_element("id", "start-sync").click()
        wait_for(lambda: _finished(driver), timeout=120, what="the sync's end")
        failed = _count(driver, "failed")
        assert failed > 0
        driver.find_element("css selector", "#outcome a").click()
        wait_for(lambda: _css(driver, "#failures"), what="the run page")
        assert len(_css(driver, "#failures tbody tr")) == failed
        screenshot(driver, "5-run-failures")
        driver.find_element("id", "retry").click()
        wait_for(lambda: "/jobs/" in driver.current_url, what="the retry's job page")
        wait_for(lambda: _finished(driver), timeout=120, what="the retry's end")
        retry = next(j for j in server.workspace.jobs.values() if j.title.startswith("retry"))
        assert retry.result is not None
        summary = retry.result.summary
        assert summary["rows_left_out"] == 200 - failed  # only the failed rows went again
        sent_again = summary["outcomes"]["updated"] + summary["outcomes"]["failed"]
        assert sent_again == failed


def test_a_file_without_an_id_column_is_fixed_in_the_mapping(tmp_path: Path, driver: Any) -> None:
    from selenium.webdriver.support.ui import Select

    from tests.conftest import write_xlsx

    book = write_xlsx(
        tmp_path / "export.xlsx",
        [
            ["Ref", "Forename", "Surname", "Stage"],
            ["1001", "Ann", "Lee", "New"],
            ["1002", "Bo", "Khan", "Lost"],
        ],
        sheet="Export",
        before=[("Old", "visible")],
    )
    with app_with_sandbox(tmp_path) as (server, _):
        _upload(driver, server, book)
        # the first sheet is read first: the user picks the right one
        sheet = Select(driver.find_element("id", "sheet"))
        assert [o.text for o in sheet.options] == ["Old", "Export"]
        sheet.select_by_value("Export")
        driver.find_element("css selector", "form.inline button").click()
        wait_for(lambda: _css(driver, "#error"), what="the error")
        error = driver.find_element("id", "error").text
        assert "id" in error and "\n" not in error.strip(), error  # one line saying what to fix
        driver.find_element("link text", "3. Mapping").click()
        wait_for(lambda: _css(driver, "#mapping-form"), what="the mapping page")
        for header, target in (
            ("Ref", "id"),
            ("Forename", "first_name"),
            ("Surname", "last_name"),
            ("Stage", "status"),
        ):
            Select(
                driver.find_element("css selector", f'select[data-header="{header}"]')
            ).select_by_value(target)
        driver.find_element("id", "apply-mapping").click()
        wait_for(lambda: _css(driver, "#codes") or _css(driver, "p.ok"), what="the check")
        assert _count(driver, "valid") == 2 and not _css(driver, "#error")

        # a mapping file loaded from disk replaces it (and is checked like the CLI's)
        driver.find_element("link text", "3. Mapping").click()
        wait_for(lambda: _css(driver, "#mapping-file"), what="the mapping page")
        broken = tmp_path / "broken.toml"
        broken.write_text('[columns]\n"Ref" = "no_such_field"\n')
        driver.find_element("id", "mapping-file").send_keys(str(broken))
        wait_for(
            lambda: "no_such_field" in driver.find_element("id", "mapping-state").text,
            what="refusal",
        )
        good = tmp_path / "crm.toml"
        good.write_text(
            '[columns]\n"Ref" = "id"\n"Forename" = "first_name"\n"Surname" = "last_name"\n'
            '"Stage" = "status"\n[rules]\nstatuses = ["New"]\n'
        )
        driver.find_element("id", "mapping-file").send_keys(str(good))
        wait_for(
            lambda: "/mapping" not in driver.current_url and _css(driver, "#codes"), what="re-check"
        )
        assert (
            _count(driver, "valid") == 1 and _count(driver, "invalid") == 1
        )  # "Lost" is not allowed
        driver.find_element("link text", "Offices").click()
        wait_for(lambda: _css(driver, "#offices"), what="the offices")
        assert len(_css(driver, "#offices tbody tr")) >= 2


def test_create_new_leads_then_revert_a_run(tmp_path: Path, driver: Any) -> None:
    from tests.conftest import write_csv

    first = write_csv(
        tmp_path / "night1.csv",
        [
            ["id", "first_name", "last_name", "status", "type", "email", "postcode"],
            ["1001", "Ann", "Lee", "New", "", "", ""],
            ["", "Cat", "New", "New", "vendor", "cat@example.com", "BS1 4DJ"],
        ],
    )
    second = write_csv(
        tmp_path / "night2.csv",
        [["id", "first_name", "last_name", "status"], ["1001", "Ann", "Lee", "Contacted"]],
    )
    with app_with_sandbox(tmp_path) as (server, sb):
        _upload(driver, server, first)
        assert _count(driver, "invalid") == 1  # without --create: the row has no id
        driver.find_element("id", "create").click()  # the checkbox re-checks at once
        wait_for(
            lambda: _count(driver, "invalid") == 0 and _css(driver, "#create:checked"),
            what="create",
        )
        driver.find_element("link text", "4. Plan and sync").click()
        wait_for(lambda: _css(driver, "#start-sync"), what="the plan")
        assert "(new)" in driver.find_element("id", "plan").text
        driver.find_element("id", "start-sync").click()
        wait_for(lambda: _finished(driver), timeout=60, what="the first sync")
        assert _count(driver, "created") == 1 and _count(driver, "updated") == 1
        assert sb.stats()["created"] == 1

        _upload(driver, server, second)
        driver.find_element("link text", "4. Plan and sync").click()
        wait_for(lambda: _css(driver, "#start-sync"), what="the plan")
        assert "Contacted" in driver.find_element("id", "plan").text
        driver.find_element("id", "start-sync").click()
        wait_for(lambda: _finished(driver), timeout=60, what="the second sync")
        assert sb.leads["1001"]["status"] == "Contacted"
        driver.find_element("css selector", "#outcome a").click()
        wait_for(lambda: _css(driver, "#revertible"), what="the run page")
        assert driver.title.startswith("Run ") and driver.title.endswith(" · leadsync")
        assert len(_css(driver, "#revertible")) == 1 and "Undo" not in driver.title
        assert "revertible: 1 field(s) of 1 lead(s)" in driver.find_element("id", "revertible").text
        driver.find_element("id", "revert").click()
        driver.switch_to.alert.accept()  # "Put back what this run changed?"
        wait_for(lambda: "/jobs/" in driver.current_url, what="the revert's job page")
        wait_for(lambda: _finished(driver), timeout=60, what="the revert")
        assert _count(driver, "reverted") == 1
        assert sb.leads["1001"]["status"] == "New"
