"""Journal stage: what was sent and what the server answered, per lead and per run (spec §5).

A SQLite file in WAL mode with ``synchronous=FULL``: every attempt is committed *before*
its request goes out and updated after, so a ``kill -9`` at any moment leaves a journal
that tells exactly what was confirmed. From it come:

- **change detection** — per lead, the last confirmed value of each field and the
  questionnaire pairs already confirmed; a row sends only what differs;
- **resume** — a re-run skips what was confirmed; an attempt left in flight by a crash is
  *ambiguous* and follows the same rules as a timeout (checked before answers are re-sent);
- **creates** — ``--create``: a ``POST`` is not idempotent, so each create's intent is
  committed under the row's person key before the request and the new lead's id after;
  a re-run finds the lead it made (and updates it) instead of creating another, and a
  create left in doubt is settled by looking the person up before anything is re-sent;
- **history** — ``leadsync runs``; ``--retry-failed RUN``;
- **the lock** — one run per journal at a time (an OS file lock through filelock, on
  POSIX and Windows alike: a dead process's lock is released by the kernel, so it is
  taken over without guesswork).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from leadsync.defaults import ENV_JOURNAL
from leadsync.errors import AbortError, InputError
from leadsync.journal.befores import SCHEMA as BEFORES_SCHEMA
from leadsync.journal.befores import BeforeLog
from leadsync.journal.common import (
    PENDING_SQL,
    RETRY_SQL,
    Pending,
    fingerprint,
    now,
)
from leadsync.journal.creates import CreateLog
from leadsync.model import Outcome
from leadsync.private import ensure_private

SCHEMA_VERSION = 1
APPLICATION_ID = 0x4C534E43  # "LSNC" in the SQLite header: this file is a leadsync journal
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    file TEXT,
    file_sha256 TEXT,
    report_dir TEXT,
    pid INTEGER,
    host TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,          -- running, done, aborted, crashed
    exit_code INTEGER,
    counts TEXT,                   -- JSON: outcome -> rows
    aborted TEXT,
    job TEXT,                      -- the job file's name, else the input's path
    rows INTEGER                   -- data rows in the file (--max-shrink compares them)
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    row INTEGER NOT NULL,
    lead_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    payload TEXT NOT NULL,         -- JSON, exactly what was sent
    state TEXT NOT NULL,           -- sending, updated, rejected, failed, unknown,
                                   -- not_attempted, resolved
    http_status INTEGER,
    code TEXT,
    message TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_lead ON attempts(lead_id, state);
CREATE INDEX IF NOT EXISTS attempts_by_run ON attempts(run_id, state);
CREATE TABLE IF NOT EXISTS lead_fields (
    lead_id TEXT NOT NULL,
    field TEXT NOT NULL,           -- a field name, or meta.<key>
    value TEXT NOT NULL,           -- JSON
    run_id TEXT NOT NULL,
    PRIMARY KEY (lead_id, field)
);
CREATE TABLE IF NOT EXISTS lead_pairs (
    lead_id TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (lead_id, question, answer)
);
CREATE TABLE IF NOT EXISTS matches (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    match_by TEXT NOT NULL,        -- --match-by: email or phone
    value TEXT NOT NULL,           -- a row's value, as looked up
    lead_id TEXT,                  -- the lead it found; NULL: the API could not be asked
    PRIMARY KEY (run_id, match_by, value)
);
CREATE TABLE IF NOT EXISTS creates (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    row INTEGER NOT NULL,
    person TEXT NOT NULL,          -- leadsync.creating.person_key of the row
    payload TEXT NOT NULL,         -- JSON, exactly what was posted
    state TEXT NOT NULL,           -- sending, created, rejected, failed, unknown,
                                   -- not_attempted, resolved (settled: not created)
    lead_id TEXT,                  -- the new lead, once known
    http_status INTEGER,
    code TEXT,
    message TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS creates_by_person ON creates(person, state);
CREATE INDEX IF NOT EXISTS creates_by_run ON creates(run_id, state);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT);
"""


def default_path() -> Path:
    """The journal's default home: the user's state directory."""
    import platformdirs

    return Path(platformdirs.user_state_dir("leadsync")) / "journal.sqlite"


def journal_location(given: Path | None, env: Mapping[str, str]) -> Path:
    """The journal to use: ``--journal``, else $LEADSYNC_JOURNAL, else :func:`default_path`."""
    if given is not None:
        return given
    if env.get(ENV_JOURNAL):
        return Path(env[ENV_JOURNAL])
    return default_path()


class Journal:
    """One SQLite journal file; safe to share between the run's worker threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            ensure_private(self.path)
            self.db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            self._refuse_foreign()
            self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA + BEFORES_SCHEMA)
            self._add_columns()
            self.db.execute(
                "INSERT OR IGNORE INTO settings VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot open the journal {self.path}: {exc}") from None
        except OSError as exc:
            raise InputError(
                f"cannot create the journal {self.path}: {exc.strerror or exc}"
            ) from None
        self.mutex = threading.Lock()
        self._lock: Any = None  # a filelock.FileLock while this process holds the journal
        self.creates = CreateLog(self)  # --create's intents and the leads they made
        self.befores = BeforeLog(self)  # what each field held before a run changed it

    def _add_columns(self) -> None:
        """A journal written by an earlier leadsync gains the columns added since."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(runs)")}
        for column, kind in (("job", "TEXT"), ("rows", "INTEGER")):
            if column not in have:
                self.db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def _refuse_foreign(self) -> None:
        """Another program's SQLite file is refused before anything is written to it."""
        (app,) = self.db.execute("PRAGMA application_id").fetchone()
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        ours = app == APPLICATION_ID or (app == 0 and {"runs", "attempts"} <= tables)
        if tables and not ours:
            self.db.close()
            raise InputError(
                f"{self.path} is not a leadsync journal (another program's database): "
                "choose another --journal; it was left untouched"
            )

    def close(self) -> None:
        self.release()
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), for the retention module."""
        return self._tx()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.mutex:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- the lock -------------------------------------------------------------------

    def acquire(self) -> None:
        """Hold the journal for this process, or raise :class:`AbortError` (exit 3).

        An OS lock on ``<journal>.lock`` (filelock: flock on POSIX, a byte lock on Windows),
        so the kernel releases it when the holder dies, even by ``kill -9``. Who holds it
        is written into the journal itself: a Windows byte lock forbids reading the lock
        file.
        """
        from filelock import FileLock, Timeout

        lock = FileLock(self.path.with_name(self.path.name + ".lock"), timeout=0, mode=0o600)
        try:
            lock.acquire()
        except Timeout:
            row = self.db.execute("SELECT value FROM settings WHERE key = 'holder'").fetchone()
            holder = row[0] if row else "another leadsync run"
            raise AbortError(
                f"another run is using the journal {self.path} ({holder}); "
                "wait for it to finish, or use another --journal"
            ) from None
        except OSError as exc:
            raise InputError(
                f"cannot lock the journal {self.path}: {exc.strerror or exc}"
            ) from None
        self._lock = lock
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {now()}"
        # we hold the lock, so any run still marked running died without finishing
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES ('holder', ?)", (holder,))
            db.execute("UPDATE runs SET status = 'crashed' WHERE status = 'running'")

    def release(self) -> None:
        if self._lock is not None:
            with self._tx() as db:
                db.execute("DELETE FROM settings WHERE key = 'holder'")
            self._lock.release()
            self._lock = None

    # -- runs -----------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        command: str,
        file: str,
        sha256: str,
        report_dir: str,
        *,
        job: str | None = None,
        rows: int | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (run_id, command, file, file_sha256, report_dir, pid, host, "
                "started_at, status, job, rows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    run_id,
                    command,
                    file,
                    sha256,
                    report_dir,
                    os.getpid(),
                    socket.gethostname(),
                    now(),
                    job,
                    rows,
                ),
            )

    def last_rows(self, job: str, run_id: str) -> int | None:
        """The data rows of the job's last run that finished (exit 0 or 1: a night with
        a few invalid rows still counts), other than ``run_id``."""
        with self.mutex:
            row = self.db.execute(
                "SELECT rows FROM runs WHERE job = ? AND run_id <> ? AND status = 'done' "
                "AND exit_code IN (0, 1) AND rows IS NOT NULL ORDER BY started_at DESC LIMIT 1",
                (job, run_id),
            ).fetchone()
        return int(row[0]) if row else None

    def finish_run(
        self, run_id: str, exit_code: int, counts: Mapping[str, int], aborted: str | None
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, exit_code = ?, counts = ?, "
                "aborted = ? WHERE run_id = ?",
                (
                    now(),
                    "aborted" if aborted else "done",
                    exit_code,
                    json.dumps(dict(counts)),
                    aborted,
                    run_id,
                ),
            )

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.mutex:
            cur = self.db.execute(
                "SELECT run_id, command, file, started_at, finished_at, status, exit_code, "
                "counts, aborted, report_dir FROM runs ORDER BY started_at DESC LIMIT ?",
                (limit,),
            )
            cols = [c[0] for c in cur.description]
            rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        for r in rows:
            r["counts"] = json.loads(r["counts"]) if r["counts"] else {}
        return rows

    def find_run(self, run_id: str) -> dict[str, Any]:
        """A run by id, or by a unique prefix of it (or 'last')."""
        with self.mutex:
            if run_id == "last":
                found = self.db.execute(
                    "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1"
                ).fetchall()
            else:
                found = self.db.execute(
                    "SELECT run_id FROM runs WHERE run_id LIKE ? || '%'", (run_id,)
                ).fetchall()
        if len(found) != 1:
            what = "no run" if not found else f"{len(found)} runs"
            raise InputError(
                f"{what} in the journal {self.path} matches {run_id!r}: see `leadsync runs`"
            )
        return next(r for r in self.runs(10_000) if r["run_id"] == found[0][0])

    def run_problems(self, run_id: str) -> list[dict[str, Any]]:
        """The attempts (updates and creates) of a run that did not end confirmed; a
        create's lead id is "(new)" while none is known."""
        with self.mutex:
            cur = self.db.execute(
                "SELECT row, lead_id, state, http_status, code, message FROM attempts "
                "WHERE run_id = ? AND state NOT IN ('updated', 'resolved') "
                "UNION ALL SELECT row, coalesce(lead_id, '(new)'), state, http_status, code, "
                "message FROM creates WHERE run_id = ? AND state NOT IN ('created', 'resolved') "
                "ORDER BY row",
                (run_id, run_id),
            )
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def leads_to_retry(self, run_id: str) -> set[str]:
        """Lead ids whose rows in ``run_id`` failed or ended unknown (or never finished)."""
        with self.mutex:
            cur = self.db.execute(
                f"SELECT DISTINCT lead_id FROM attempts WHERE run_id = ? AND state IN {RETRY_SQL}",
                (run_id,),
            )
            return {r[0] for r in cur.fetchall()}

    def record_matches(self, run_id: str, match_by: str, found: Mapping[str, str | None]) -> None:
        """--match-by: the lead each value found (None: the lookup could not be made), so
        that ``--retry-failed`` can pick those rows out again by their value."""
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO matches VALUES (?, ?, ?, ?)",
                [(run_id, match_by, value, lead) for value, lead in found.items()],
            )

    def failed_lookups(self, run_id: str) -> int:
        """How many --match-by values of ``run_id`` could not be looked up."""
        with self.mutex:
            cur = self.db.execute(
                "SELECT count(*) FROM matches WHERE run_id = ? AND lead_id IS NULL", (run_id,)
            )
            return int(cur.fetchone()[0])

    def matches_to_retry(self, run_id: str, match_by: str) -> set[str]:
        """--match-by values in ``run_id`` whose lookup failed or whose lead's row did."""
        with self.mutex:
            cur = self.db.execute(
                "SELECT value FROM matches WHERE run_id = ? AND match_by = ? AND (lead_id IS NULL "
                "OR lead_id IN (SELECT lead_id FROM attempts WHERE run_id = ? "
                f"AND state IN {RETRY_SQL}))",
                (run_id, match_by, run_id),
            )
            return {r[0] for r in cur.fetchall()}

    # -- attempts -------------------------------------------------------------------

    def begin(
        self,
        run_id: str,
        row: int,
        lead_id: str,
        payload: Mapping[str, Any],
        befores: Mapping[str, tuple[str, Any]] | None = None,
    ) -> int:
        """Record an attempt durably, before its request goes out; with ``befores``
        (field -> (source, value), see :mod:`leadsync.journal.befores`) in the same
        transaction, what each field held before."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO attempts (run_id, row, lead_id, fingerprint, payload, state, "
                "started_at) VALUES (?, ?, ?, ?, ?, 'sending', ?)",
                (
                    run_id,
                    row,
                    lead_id,
                    fingerprint(payload),
                    json.dumps(payload, ensure_ascii=False),
                    now(),
                ),
            )
            attempt = int(cur.lastrowid or 0)
            if befores:
                db.executemany(
                    "INSERT INTO befores VALUES (?, ?, ?, ?, ?, ?, ?)",
                    BeforeLog.rows(attempt, run_id, lead_id, payload, befores),
                )
            return attempt

    def finish(
        self,
        attempt_id: int,
        lead_id: str,
        run_id: str,
        outcome: str,
        payload: Mapping[str, Any],
        http_status: int | None,
        code: str,
        message: str,
    ) -> None:
        """Record the answer; a confirmed update becomes the lead's known state."""
        with self._tx() as db:
            db.execute(
                "UPDATE attempts SET state = ?, http_status = ?, code = ?, message = ?, "
                "finished_at = ? WHERE id = ?",
                (outcome, http_status, code, message, now(), attempt_id),
            )
            if outcome == Outcome.UPDATED:
                self.confirm(db, lead_id, run_id, payload)
                # an earlier in-flight attempt of this lead is settled by this one
                db.execute(
                    "UPDATE attempts SET state = 'resolved', finished_at = ? "
                    f"WHERE lead_id = ? AND id <> ? AND state IN {PENDING_SQL}",
                    (now(), lead_id, attempt_id),
                )

    def resolve(self, pending: Pending, lead_id: str, run_id: str, applied: bool) -> None:
        """Settle an earlier ambiguous attempt once the lead has been read back."""
        with self._tx() as db:
            if applied:
                self.confirm(db, lead_id, pending.run_id, pending.payload)
            db.execute(
                "UPDATE attempts SET state = 'resolved', finished_at = ?, message = "
                "coalesce(message || '; ', '') || ? WHERE id = ?",
                (
                    now(),
                    f"checked in run {run_id}: {'applied' if applied else 'not applied'}",
                    pending.attempt_id,
                ),
            )

    @staticmethod
    def confirm(
        db: sqlite3.Connection, lead_id: str, run_id: str, payload: Mapping[str, Any]
    ) -> None:
        for key, value in payload.items():
            if key == "questionnaire":
                db.executemany(
                    "INSERT OR IGNORE INTO lead_pairs VALUES (?, ?, ?, ?)",
                    [(lead_id, q, a, run_id) for q, a in value],
                )
            elif key == "meta":
                db.executemany(
                    "INSERT OR REPLACE INTO lead_fields VALUES (?, ?, ?, ?)",
                    [(lead_id, f"meta.{k}", json.dumps(v), run_id) for k, v in value.items()],
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO lead_fields VALUES (?, ?, ?, ?)",
                    (lead_id, key, json.dumps(value), run_id),
                )

    # -- what a lead already has ----------------------------------------------------

    def known(self, lead_id: str) -> tuple[dict[str, Any], set[tuple[str, str]]]:
        """The lead's last confirmed field values and questionnaire pairs."""
        with self.mutex:
            fields = {
                f: json.loads(v)
                for f, v in self.db.execute(
                    "SELECT field, value FROM lead_fields WHERE lead_id = ?", (lead_id,)
                )
            }
            pairs = {
                (q, a)
                for q, a in self.db.execute(
                    "SELECT question, answer FROM lead_pairs WHERE lead_id = ?", (lead_id,)
                )
            }
        return fields, pairs

    def pending(self, lead_id: str, run_id: str) -> list[Pending]:
        """Attempts of earlier runs for this lead whose outcome is not known."""
        with self.mutex:
            rows = self.db.execute(
                "SELECT id, run_id, payload FROM attempts WHERE lead_id = ? AND run_id <> ? "
                f"AND state IN {PENDING_SQL} ORDER BY id",
                (lead_id, run_id),
            ).fetchall()
        return [Pending(i, r, json.loads(p)) for i, r, p in rows]

    def diff(
        self, lead_id: str, payload: Mapping[str, Any], *, keep: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The part of ``payload`` not already confirmed for the lead (``{}``: nothing new).

        Fields in ``keep`` (the names an account requires on every update) go along
        whenever something else changed.
        """
        fields, pairs = self.known(lead_id)
        out = diff_payload(payload, fields, pairs)
        if out:
            for key in keep:
                if key in payload:
                    out.setdefault(key, payload[key])
            out = {k: out[k] for k in payload if k in out}  # the row's own order
        return out


def diff_payload(
    payload: Mapping[str, Any], fields: Mapping[str, Any], pairs: Collection[tuple[Any, ...]]
) -> dict[str, Any]:
    """The part of ``payload`` that differs from a lead's known ``fields`` (meta keys as
    ``meta.<key>``) and questionnaire ``pairs``."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "questionnaire":
            new = [p for p in value if (p[0], p[1]) not in pairs]
            if new:
                out[key] = new
        elif key == "meta":
            changed = {k: v for k, v in value.items() if fields.get(f"meta.{k}") != v}
            if changed:
                out[key] = changed
        elif key not in fields or fields[key] != value:
            out[key] = value
    return out
