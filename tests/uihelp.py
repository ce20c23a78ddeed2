"""Shared parts of the app's tests: the app served for real on loopback, next to a real
sandbox, and Debian's Chromium driven by Selenium through its chromedriver."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig
from leadsync.ui import Server, Workspace

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "ui"  # screenshots: CI keeps them; git ignores them
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@contextlib.contextmanager
def app_with_sandbox(
    tmp_path: Path, sandbox: SandboxConfig | None = None, **workspace: Any
) -> Iterator[tuple[Server, Sandbox]]:
    """The app (key, base URL and journal from its environment) and the sandbox it syncs to."""
    with Sandbox(sandbox or SandboxConfig(seed=1)) as sb:
        env = {
            "LEADSYNC_API_KEY": DEFAULT_KEY,
            "LEADSYNC_BASE_URL": sb.base_url,
            "LEADSYNC_JOURNAL": str(tmp_path / "journal.sqlite"),
        }
        ws = Workspace(env, report_root=tmp_path / "reports", **workspace)
        with Server(ws) as server:
            yield server, sb


def browser(downloads: Path) -> Any:
    """Headless Chromium (the system's), downloads going to ``downloads``."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("LEADSYNC_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM} or chromedriver at {CHROMEDRIVER}")
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1400,1000", f"--user-data-dir={downloads.parent / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    downloads.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    return driver


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    """Poll ``check`` until it returns something true (a readiness check, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.05)


def downloaded(folder: Path, name: str) -> Path:
    """The file once Chromium has finished writing it."""
    path = folder / name
    wait_for(lambda: path.is_file() and not list(folder.glob("*.crdownload")), what=name)
    return path


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000
    return path
