"""The web app's routes (Starlette): each page calls the workspace, which calls the
library; the pages are Jinja templates with htmx for paging, forms and live progress.

Errors the user can fix (:class:`~leadsync.errors.LeadsyncError`) come back as one line
on the page, never a traceback; the API key never reaches a page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from leadsync import __version__
from leadsync.config import DATE_ORDERS, parse_mapping
from leadsync.errors import InputError, LeadsyncError, MappingError
from leadsync.private import open_private
from leadsync.ui import mapping_form as mf
from leadsync.ui.grid import PAGE_ROWS
from leadsync.ui.security import Gate, Secrets
from leadsync.ui.workspace import Upload, Workspace, exit_text

HERE = Path(__file__).parent
_REPORT_FILES = ("report.xlsx", "failures.csv", "successes.csv", "summary.json")
_MAPPING_MAX = 1 << 20  # bytes: a mapping file is a few KB
PLAN_SHOWN = 1000  # changes listed on the plan page (the counts cover them all)

Handler = Callable[[Request], Awaitable[Response]]


def create_app(workspace: Workspace, secrets: Secrets) -> Gate:
    """The app behind its gate (token, Host, CSRF, CSP)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(
        csrf=secrets.csrf, version=__version__, exit_text=exit_text, report_files=_REPORT_FILES
    )
    pages = _Pages(workspace, env)
    routes = [
        Route("/", pages.home),
        Route("/key", pages.key, methods=["POST"]),
        Route("/upload", pages.upload, methods=["PUT"]),
        Route("/file/{fid}", pages.file),
        Route("/file/{fid}/grid", pages.grid),
        Route("/file/{fid}/sheet", pages.sheet, methods=["POST"]),
        Route("/file/{fid}/create", pages.create, methods=["POST"]),
        Route("/file/{fid}/mapping", pages.mapping, methods=["GET", "POST"]),
        Route("/file/{fid}/mapping.toml", pages.mapping_toml),
        Route("/file/{fid}/mapping-file", pages.load_mapping, methods=["PUT"]),
        Route("/file/{fid}/validation/{name}", pages.validation_file),
        Route("/file/{fid}/plan", pages.plan),
        Route("/file/{fid}/sync", pages.sync, methods=["POST"]),
        Route("/jobs/{jid}", pages.job),
        Route("/jobs/{jid}/progress", pages.progress),
        Route("/jobs/{jid}/stop", pages.stop, methods=["POST"]),
        Route("/runs", pages.runs),
        Route("/runs/{run_id}", pages.run),
        Route("/runs/{run_id}/retry", pages.retry, methods=["POST"]),
        Route("/runs/{run_id}/revert", pages.revert, methods=["POST"]),
        Route("/runs/{run_id}/files/{name}", pages.run_file),
        Route("/offices", pages.offices),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    # a LeadsyncError is the user's to fix (answered as one line); any other is a bug (the
    # same answer, and uvicorn logs its traceback on the terminal that started the app)
    handlers = {LeadsyncError: pages.failed, Exception: pages.failed}
    app = Starlette(routes=routes, exception_handlers=handlers)
    return Gate(app, secrets)


class _Pages:
    def __init__(self, workspace: Workspace, env: jinja2.Environment) -> None:
        self.ws, self.env = workspace, env

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("key_source", self.ws.key_source)
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(self._clean(html), status_code=status)

    def _clean(self, text: str) -> str:
        for secret in self.ws.secrets():
            text = text.replace(secret, "[redacted]")
        return text

    async def failed(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, LeadsyncError):
            message, status = str(exc), 400
        else:
            message, status = f"internal error: {type(exc).__name__}: {exc}", 500
        message = self._clean(message)
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": message}, status_code=status)
        if request.headers.get("hx-request"):
            # htmx swaps only 2xx answers: say where the message goes instead
            answer = self.page("_error.html", 200, message=message)
            answer.headers["hx-retarget"] = "main"
            answer.headers["hx-reswap"] = "afterbegin"
            return answer
        return self.page("error.html", status, message=message)

    # -- start page: the key, the upload --------------------------------------------

    async def home(self, request: Request) -> Response:
        uploads = list(self.ws.uploads.values())
        return self.page(
            "home.html",
            uploads=uploads,
            has_key=self.ws.has_key,
            max_mb=self.ws.max_upload >> 20,
            journal=self.ws.journal,
        )

    async def key(self, request: Request) -> Response:
        form = await request.form()
        self.ws.set_key(str(form.get("key", "")))
        return self.page("_key.html", has_key=True, key_source=self.ws.key_source)

    async def upload(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        if int(request.headers.get("content-length") or 0) > self.ws.max_upload:
            raise self.ws.too_big(name)
        fid, path = self.ws.reserve(name)
        size = 0
        try:
            with open_private(path, "wb") as fh:
                async for part in request.stream():
                    size += len(part)
                    if size > self.ws.max_upload:
                        raise self.ws.too_big(path.name)
                    fh.write(part)
        except BaseException:
            self.ws.discard(fid)
            raise
        upload = await run_in_threadpool(self.ws.register, fid, path)
        return JSONResponse({"url": f"/file/{upload.fid}"})

    # -- a file: validation, grid, sheet --------------------------------------------

    async def file(self, request: Request) -> Response:
        upload = self._upload(request)
        only = request.query_params.get("all") is None
        return self.page("file.html", u=upload, **self._grid_context(upload, 1, only))

    async def grid(self, request: Request) -> Response:
        upload = self._upload(request)
        number = int(request.query_params.get("page", "1") or 1)
        only = request.query_params.get("only", "1") == "1"
        return self.page("_grid.html", u=upload, **self._grid_context(upload, number, only))

    def _grid_context(self, upload: Upload, number: int, only: bool) -> dict[str, Any]:
        grid = upload.grid
        if grid is None:
            return {"rows": [], "page_no": 1, "pages": 1, "only": only, "shown": 0}
        shown = grid.count(only)
        pages = max(1, -(-shown // PAGE_ROWS))
        number = min(max(number, 1), pages)
        return {
            "rows": grid.page(number, only),
            "page_no": number,
            "pages": pages,
            "only": only,
            "shown": shown,
        }

    async def sheet(self, request: Request) -> Response:
        upload = self._upload(request)
        form = await request.form()
        wanted = str(form.get("sheet", ""))
        if wanted not in upload.sheets:
            raise InputError(f"{upload.name} has no sheet {wanted!r}")
        upload.sheet = wanted
        await run_in_threadpool(self.ws.check, upload)
        return _go(f"/file/{upload.fid}")

    async def create(self, request: Request) -> Response:
        upload = self._upload(request)
        form = await request.form()
        upload.create = form.get("create") == "on"
        await run_in_threadpool(self.ws.check, upload)
        return _go(f"/file/{upload.fid}")

    async def validation_file(self, request: Request) -> Response:
        upload = self._upload(request)
        if upload.checked is None:
            raise InputError("this file has no validation reports")
        return _report_file(upload.checked.report_dir, request.path_params["name"])

    # -- the mapping --------------------------------------------------------------------

    async def mapping(self, request: Request) -> Response:
        upload = self._upload(request)
        config = self.ws.config(upload)
        headers = upload.headers
        auto = mf.auto_targets(headers, config)
        error, shown, current = None, upload.mapping, mf.current_targets(headers, config)
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.form()).items()}
            doc = mf.doc_from_form(form, headers, upload.mapping, auto)
            try:
                name = upload.mapping_name  # a loaded file's name; None: made here
                await run_in_threadpool(self.ws.set_mapping, upload, doc, name)
                return _go(f"/file/{upload.fid}")
            except MappingError as exc:  # shown again as typed, with what to fix
                error, shown = str(exc), doc
                current = [form.get(f"column-{i}", mf.NOT_MAPPED) for i in range(len(headers))]
        columns = [
            (i, h, current[i], auto[i], mf.choices(h, current[i], config))
            for i, h in enumerate(headers)
        ]
        lines = mf.value_lines(shown) + [("", "", "")] * mf.BLANK_VALUE_LINES
        dates = shown.get("dates") or {}
        return self.page(
            "mapping.html",
            u=upload,
            columns=columns,
            unmapped=[h for i, h in enumerate(headers) if current[i] == mf.NOT_MAPPED],
            lines=lines,
            defaults=mf.default_values(shown),
            default_fields=mf.default_fields(),
            value_fields=[f for f, _ in mf.default_fields()],
            date_orders=DATE_ORDERS,
            date_order=str(dates.get("order", config.date_order)),
            timezone=str(dates.get("timezone", config.timezone)),
            toml=mf.to_toml(upload.mapping),
            error=error,
        )

    async def mapping_toml(self, request: Request) -> Response:
        upload = self._upload(request)
        name = upload.mapping_name or f"{Path(upload.name).stem}-mapping.toml"
        return Response(
            mf.to_toml(upload.mapping),
            media_type="application/toml",
            headers={"content-disposition": _attachment(name)},
        )

    async def load_mapping(self, request: Request) -> Response:
        import tomllib

        upload = self._upload(request)
        raw = b""
        async for part in request.stream():
            raw += part
            if len(raw) > _MAPPING_MAX:
                raise InputError("a mapping file is a few KB of TOML: this one is over 1 MB")
        name = Path(request.query_params.get("name", "mapping.toml")).name
        try:
            doc = tomllib.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise MappingError(f"mapping file {name} is not valid TOML: {exc}") from None
        try:
            parse_mapping(doc, source=name)
        except MappingError as exc:
            raise MappingError(f"mapping file {name}: {exc}") from None
        await run_in_threadpool(self.ws.set_mapping, upload, doc, name)
        return JSONResponse({"url": f"/file/{upload.fid}"})

    # -- plan and sync ----------------------------------------------------------------

    async def plan(self, request: Request) -> Response:
        from leadsync.planner import plan

        upload = self._upload(request)
        config = self.ws.config(upload)
        journal = self.ws.journal if self.ws.journal.exists() else None
        left_out: list[int] = []

        def collect() -> tuple[list[Any], int, int]:
            changes: list[Any] = []
            rows: set[int] = set()
            count = 0
            for change in plan(upload.path, config, journal=journal, left_out=left_out):
                count += 1
                rows.add(change.row)
                if len(changes) < PLAN_SHOWN:
                    changes.append(change)
            return changes, len(rows), count

        changes, leads, count = await run_in_threadpool(collect)
        return self.page(
            "plan.html",
            u=upload,
            changes=changes,
            count=count,
            leads=leads,
            left_out=len(left_out),
            shown=PLAN_SHOWN,
            from_journal=journal is not None,
            base_url=config.base_url,
            has_key=self.ws.has_key,
        )

    async def sync(self, request: Request) -> Response:
        upload = self._upload(request)
        job = self.ws.start_sync(upload, path=upload.path, config=self.ws.config(upload))
        return _go(f"/jobs/{job.jid}")

    async def job(self, request: Request) -> Response:
        job = self.ws.job(request.path_params["jid"])
        return self.page("job.html", job=job, f=job.figures())

    async def progress(self, request: Request) -> Response:
        job = self.ws.job(request.path_params["jid"])
        return self.page("_progress.html", job=job, f=job.figures())

    async def stop(self, request: Request) -> Response:
        job = self.ws.job(request.path_params["jid"])
        job.stop.set()  # as Ctrl-C: rows in flight finish, the rest are not_attempted
        return self.page("_progress.html", job=job, f=job.figures())

    # -- past runs ----------------------------------------------------------------------

    async def runs(self, request: Request) -> Response:
        from leadsync.journal import Journal

        listed: list[dict[str, Any]] = []
        if self.ws.journal.exists():
            with Journal(self.ws.journal) as book:
                listed = book.runs(100)
        return self.page("runs.html", runs=listed, journal=self.ws.journal)

    async def run(self, request: Request) -> Response:
        found, problems = self._run(request.path_params["run_id"])
        folder = Path(found["report_dir"] or "")
        files = [n for n in _REPORT_FILES if (folder / n).is_file()]
        return self.page(
            "run.html",
            run=found,
            problems=problems,
            files=files,
            has_key=self.ws.has_key,
            revertible=self._revertible(found["run_id"]),
        )

    def _revertible(self, run_id: str) -> str | None:
        """What a revert of the run could put back (None: nothing, or not a sync)."""
        from leadsync.journal import Journal
        from leadsync.revert import plan_revert, revertible

        with Journal(self.ws.journal) as book:
            items = plan_revert(book, run_id)
        return revertible(items) if items else None

    async def retry(self, request: Request) -> Response:
        found, _ = self._run(request.path_params["run_id"])
        path = Path(found["file"] or "")
        if not path.is_file():
            raise InputError(
                f"the file run {found['run_id']} read is gone ({path}): upload it again and "
                "sync it (the journal sends only what did not go through)"
            )
        upload = next((u for u in self.ws.uploads.values() if u.path == path), None)
        config = self.ws.config(upload) if upload else self.ws.plain_config()
        job = self.ws.start_sync(upload, path=path, config=config, retry_of=found["run_id"])
        return _go(f"/jobs/{job.jid}")

    async def revert(self, request: Request) -> Response:
        found, _ = self._run(request.path_params["run_id"])
        job = self.ws.start_revert(found["run_id"])
        return _go(f"/jobs/{job.jid}")

    async def run_file(self, request: Request) -> Response:
        found, _ = self._run(request.path_params["run_id"])
        return _report_file(Path(found["report_dir"] or ""), request.path_params["name"])

    def _run(self, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from leadsync.journal import Journal

        if not self.ws.journal.exists():
            raise InputError(
                f"no journal at {self.ws.journal} yet: it is created by the first sync"
            )
        with Journal(self.ws.journal) as book:
            found = book.find_run(run_id)
            return found, book.run_problems(found["run_id"])

    async def offices(self, request: Request) -> Response:
        from leadsync.api import list_offices

        config = self.ws.plain_config()
        found = await run_in_threadpool(list_offices, config, self.ws.api_key())
        return self.page("offices.html", offices=found, base_url=config.base_url)

    def _upload(self, request: Request) -> Upload:
        return self.ws.upload(request.path_params["fid"])


def _report_file(folder: Path, name: str) -> Response:
    if name not in _REPORT_FILES or not (folder / name).is_file():
        raise InputError(f"no report {name!r} here")
    return FileResponse(folder / name, filename=name)


def _go(url: str) -> Response:
    """After a form posted by htmx: the browser goes to ``url``."""
    return Response(status_code=204, headers={"hx-redirect": url})


def _attachment(name: str) -> str:
    return f"attachment; filename*=UTF-8''{quote(name)}"
