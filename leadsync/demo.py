"""``leadsync demo``: a whole sync rehearsed offline — the sandbox with injected faults,
the bundled sample export synced to it, then synced again through the journal (the
nightly re-run: nothing changed, nothing is sent)."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadsync.config import Config
from leadsync.data import sample_path
from leadsync.engine import sync
from leadsync.run import Progress, RunResult
from leadsync.sandbox import DEFAULT_KEY, Sandbox, SandboxConfig

FAULTS = SandboxConfig(latency=0.02, fail_503=0.05, fail_500_after=0.03, drop_after=0.03, seed=7)
FAULTS_TEXT = "503 5%, 500 after applying 3%, connection dropped after applying 3%"


@dataclass
class DemoResult:
    """The first sync, the re-run (None if the demo was stopped first), and what the
    sandbox received."""

    result: RunResult
    again: RunResult | None
    stats: dict[str, Any]
    journal: Path


def find_sample() -> Path:
    """The bundled sample export (shipped inside the package)."""
    return sample_path()


def run_demo(
    report_dir: Path | None,
    *,
    stop: threading.Event,
    progress: Progress | None = None,
    announce: Callable[[str], None] = lambda text: None,
) -> DemoResult:
    """Run the demo. With ``report_dir`` everything it writes goes there: the first
    run's reports, the re-run's (``re-run/``) and the journal; without it the reports go
    to the usual ``leadsync-reports/<run-id>/`` and the journal to a temporary folder."""
    sample = find_sample()
    if report_dir is not None:
        journal = report_dir / "journal.sqlite"
        again_dir: Path | None = report_dir / "re-run"
    else:
        journal = Path(tempfile.mkdtemp(prefix="leadsync-demo-")) / "journal.sqlite"
        again_dir = None
    with Sandbox(FAULTS) as sandbox:
        announce(f"sandbox listening on {sandbox.base_url} (faults: {FAULTS_TEXT})")
        config = Config(base_url=sandbox.base_url, backoff_initial=0.1)
        result = sync(
            sample,
            config,
            report_dir,
            api_key=DEFAULT_KEY,
            journal=journal,
            stop=stop,
            progress=progress,
        )
        again = None
        if not stop.is_set():
            again = sync(
                sample,
                config,
                again_dir,
                api_key=DEFAULT_KEY,
                journal=journal,
                stop=stop,
                xlsx_report=False,
            )
        stats = sandbox.stats()
    return DemoResult(result, again, stats, journal)
