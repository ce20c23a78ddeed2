"""What one ``leadsync ui`` process holds: its private folder (uploads, validation
reports, the grids), the files uploaded, each file's mapping, the syncs it started, and
the API key when one was typed in (in this process's memory only).

Everything here calls the library (:mod:`leadsync.run`, :mod:`leadsync.engine`,
:mod:`leadsync.planner`); no rule, conversion or sending logic lives in the app.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsync import defaults
from leadsync.config import Config, build_config, parse_mapping, read_api_key
from leadsync.errors import ExitCode, InputError, LeadsyncError, MappingError
from leadsync.journal import journal_location
from leadsync.reader import open_table, sheet_names
from leadsync.reader.text import TEXT_SUFFIXES
from leadsync.reader.workbook import EXCEL_SUFFIXES
from leadsync.run import RunResult
from leadsync.ui.grid import Grid, GridWriter

UPLOAD_SUFFIXES = TEXT_SUFFIXES + EXCEL_SUFFIXES  # what open_table reads
DEFAULT_MAX_UPLOAD = 256 << 20  # bytes: a million-row export fits


@dataclass
class Upload:
    """One uploaded file, its sheet and mapping, and its last validation."""

    fid: str
    name: str
    path: Path
    sheets: list[str]
    sheet: str | None
    mapping: dict[str, Any]  # the mapping document, as the TOML file holds it
    mapping_name: str | None = None
    checked: RunResult | None = None
    grid: Grid | None = None
    headers: tuple[str, ...] = ()
    create: bool = False  # rows without a lead id are new leads (sync --create)
    error: str | None = None  # why the file as a whole could not be validated


@dataclass
class SyncJob:
    """A sync started from the app, in its own thread, with live progress."""

    jid: str
    upload: Upload | None
    title: str
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    engine: Any = None  # the SyncEngine, for its live figures
    result: RunResult | None = None
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)
    ended: float | None = None

    def progress(self, done: int, total: int, counts: Counter[str]) -> None:
        self.done, self.total, self.counts = done, total, Counter(counts)

    def figures(self) -> dict[str, Any]:
        """What the progress panel shows."""
        live = self.engine.live() if self.engine is not None else {}
        elapsed = max((self.ended or time.monotonic()) - self.started, 1e-9)
        counts = dict(self.result.summary["outcomes"]) if self.result else dict(self.counts)
        done = sum(counts.values()) if self.result else self.done
        total = self.total or done
        return {
            "done": done,
            "total": total,
            "percent": round(100 * done / total) if total else (100 if self.result else 0),
            "rate": round(done / elapsed, 1),
            "retries": live.get("retries", 0),
            "rate_limited_429": live.get("rate_limited_429", 0),
            "requests": live.get("requests", 0),
            "counts": {k: v for k, v in counts.items() if v},
            "running": not self.finished.is_set(),
            "stopping": self.stop.is_set() and not self.finished.is_set(),
        }


class Workspace:
    """The app's state. ``env`` is the environment the server was started with (the
    API key, the base URL and the journal come from it as for the CLI)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        mapping: Path | None = None,
        journal: Path | None = None,
        report_root: Path | None = None,
        key_file: Path | None = None,
        max_upload: int = DEFAULT_MAX_UPLOAD,
    ) -> None:
        self.env = dict(env)
        remove_orphans()
        self.folder = Path(tempfile.mkdtemp(prefix=_PREFIX))  # mode 0700
        (self.folder / _PID).write_text(str(os.getpid()))
        self.max_upload = max_upload
        self.journal = journal_location(journal, self.env)
        self.report_root = report_root
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, SyncJob] = {}
        self.lock = threading.Lock()
        self.base_mapping: dict[str, Any] = {}
        self.base_mapping_name: str | None = None
        if mapping is not None:
            from leadsync.config import load_mapping, read_toml

            load_mapping(mapping)  # refuse a broken file at start, as the CLI would
            self.base_mapping = read_toml(mapping, "mapping file")
            self.base_mapping_name = mapping.name
        self._key: str | None = None
        self.key_source = "none"
        try:
            self._key, _ = read_api_key(self.env, key_file)
            self.key_source = "key file" if key_file is not None else "environment"
        except MappingError:
            if key_file is not None:
                raise

    # -- the API key: kept here only, never rendered -------------------------------

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def api_key(self) -> str:
        if self._key is None:
            raise LeadsyncError(
                f"no API key: enter it on the start page, or set {defaults.ENV_API_KEY} "
                "before `leadsync ui`"
            )
        return self._key

    def set_key(self, key: str) -> None:
        """A key typed into the app: checked as a key file's would be, kept in memory."""
        found, _ = read_api_key({defaults.ENV_API_KEY: key})
        self._key, self.key_source = found, "entered (kept in this process's memory)"

    def secrets(self) -> list[str]:
        """What must never appear in a page (the key itself)."""
        return [self._key] if self._key else []

    # -- files ------------------------------------------------------------------------

    def reserve(self, name: str) -> tuple[str, Path]:
        """A place for an upload in the private folder: its id and its path."""
        safe = _safe_name(name)
        fid = secrets.token_hex(6)
        folder = self.folder / fid
        folder.mkdir(mode=0o700)
        return fid, folder / safe

    def discard(self, fid: str) -> None:
        shutil.rmtree(self.folder / fid, ignore_errors=True)

    def too_big(self, name: str) -> InputError:
        return InputError(
            f"{name} is over the upload limit of {self.max_upload >> 20} MB "
            "(start `leadsync ui --max-upload-mb N` for a bigger file)"
        )

    def register(self, fid: str, path: Path) -> Upload:
        """A file stored by :meth:`reserve`'s caller, validated."""
        sheets = [] if path.suffix.lower() in TEXT_SUFFIXES else sheet_names(path)
        upload = Upload(
            fid, path.name, path, sheets, None, dict(self.base_mapping), self.base_mapping_name
        )
        with self.lock:
            self.uploads[fid] = upload
        self.check(upload)
        return upload

    def upload(self, fid: str) -> Upload:
        found = self.uploads.get(fid)
        if found is None:
            raise InputError("that file is no longer here: upload it again")
        return found

    def config(self, upload: Upload) -> Config:
        """The upload's settings: its mapping document, then the environment, the sheet."""
        base = parse_mapping(upload.mapping, source=upload.mapping_name)
        extra: dict[str, Any] = {"sheet": upload.sheet, "create": upload.create}
        if self.report_root is not None:
            extra["report_root"] = str(self.report_root)
        return build_config(None, self.env, base=base, **extra)

    def plain_config(self) -> Config:
        """The settings of what is not an upload's (offices, reverts, retries of runs
        made elsewhere): the environment over the defaults."""
        return build_config(None, self.env)

    def set_mapping(self, upload: Upload, doc: dict[str, Any], name: str | None) -> None:
        """A new mapping for ``upload`` (refused, and the old one kept, when invalid)."""
        parse_mapping(doc, source=name)
        upload.mapping, upload.mapping_name = doc, name
        self.check(upload)

    def check(self, upload: Upload) -> None:
        """Validate ``upload`` as `leadsync validate` would; keep the rows for the grid."""
        from leadsync.run import validate

        run_id = secrets.token_hex(4)
        out = upload.path.parent / f"validation-{run_id}"
        upload.error = None
        date_order = defaults.DATE_ORDER  # the headers read as the run reads them
        try:
            config = self.config(upload)
            date_order = config.date_order
            rows = GridWriter(upload.path.parent / f"grid-{run_id}.sqlite")
            result = validate(upload.path, config, out, observer=rows)  # one read of the file
            grid = rows.finish()
            upload.headers = grid.headers
        except LeadsyncError as exc:
            upload.checked, upload.grid, upload.error = None, None, str(exc)
            with contextlib.suppress(LeadsyncError):  # the mapping page needs the headers
                table = open_table(upload.path, upload.sheet, date_order=date_order)
                table.close()  # the headers are all this needs: no reading ahead
                upload.headers = table.headers
            return
        old, upload.grid, upload.checked = upload.grid, grid, result
        if upload.sheet is None:
            upload.sheet = result.summary["file"]["sheet"]
        if old is not None:
            old.close()

    # -- syncs ------------------------------------------------------------------------

    def start_sync(
        self, upload: Upload | None, *, path: Path, config: Config, retry_of: str | None = None
    ) -> SyncJob:
        """Start a sync of ``path`` in a thread; its progress is on the returned job."""
        from leadsync.engine import sync

        title = f"retry of {retry_of}" if retry_of else f"sync of {path.name}"

        def work(job: SyncJob, key: str) -> RunResult:
            return sync(
                path,
                config,
                api_key=key,
                journal=self.journal,
                retry_failed=retry_of,
                stop=job.stop,
                progress=job.progress,
                watch=lambda engine: setattr(job, "engine", engine),
            )

        return self._start(upload, title, work)

    def start_revert(self, run_id: str) -> SyncJob:
        """Start ``leadsync revert RUN`` in a thread (Stop works as for a sync)."""
        from leadsync.revert import revert

        config = self.plain_config()

        def work(job: SyncJob, key: str) -> RunResult:
            return revert(run_id, config, api_key=key, journal=self.journal, stop=job.stop)

        return self._start(None, f"revert of {run_id}", work)

    def _start(
        self, upload: Upload | None, title: str, work: Callable[[SyncJob, str], RunResult]
    ) -> SyncJob:
        key = self.api_key()
        with self.lock:
            if any(not j.finished.is_set() for j in self.jobs.values()):
                raise LeadsyncError("a sync is already running: wait for it, or stop it")
            job = SyncJob(secrets.token_hex(6), upload, title)
            self.jobs[job.jid] = job

        def run() -> None:
            try:
                job.result = work(job, key)
            except LeadsyncError as exc:
                job.error = str(exc)
            except Exception as exc:  # the app stays up; the message says what broke
                job.error = f"internal error: {type(exc).__name__}: {exc}"
            finally:
                job.ended = time.monotonic()
                job.finished.set()

        threading.Thread(target=run, name=f"leadsync-ui-job-{job.jid}", daemon=True).start()
        return job

    def job(self, jid: str) -> SyncJob:
        found = self.jobs.get(jid)
        if found is None:
            raise InputError("no such sync in this session")
        return found

    def close(self) -> None:
        """Stop running syncs, then remove the private folder and all it holds."""
        for job in list(self.jobs.values()):
            job.stop.set()
        for job in list(self.jobs.values()):
            job.finished.wait(timeout=defaults.STOP_GRACE + 5)
        for upload in list(self.uploads.values()):
            if upload.grid is not None:
                upload.grid.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_PREFIX = "leadsync-ui-"
_PID = "pid"  # the server that owns the folder


def remove_orphans() -> list[Path]:
    """Remove the private folders of `leadsync ui` servers that died without removing
    theirs (killed, or the machine lost power): uploads hold personal data."""
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / _PID).read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or still being made
        if not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_text(code: int) -> str:
    """An exit code in words, as the README's table says it."""
    try:
        return ExitCode(code).name.lower().replace("_", " ")
    except ValueError:
        return str(code)


def _safe_name(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/")).strip() or "upload"
    base = "".join(ch if ch.isalnum() or ch in " ._-()" else "_" for ch in base)[:120]
    if not base.lower().endswith(UPLOAD_SUFFIXES):
        raise InputError(
            f"{base}: not a spreadsheet leadsync reads (CSV, TSV, XLSX, XLSM, XLS, XLSB, ODS)"
        )
    return base
