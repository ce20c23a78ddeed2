"""Files that ship inside the package: the sample export (``sample/``) and the
templates (``templates/``). ``sample_data/`` and ``templates/`` at the top of the source
tree hold identical copies (a test keeps them so)."""

from __future__ import annotations

import shutil
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from leadsync.errors import LeadsyncError

SAMPLE = "leads.xlsx"


def packaged(folder: str) -> list[Traversable]:
    """The files shipped in ``folder`` (``sample`` or ``templates``), by name."""
    root = files("leadsync.data").joinpath(folder)
    return sorted((f for f in root.iterdir() if f.is_file()), key=lambda f: f.name)


def sample_path(name: str = SAMPLE) -> Path:
    """The packaged sample export as a real file (an installed wheel unpacks to files;
    a zipped install would need as_file, which leadsync is not installed as)."""
    found = files("leadsync.data").joinpath("sample", name)
    path = Path(str(found))
    if not path.is_file():
        raise LeadsyncError(f"the packaged sample {name} is missing: reinstall leadsync")
    return path


def template_path(name: str) -> Path:
    """A packaged template as a real file (see :func:`sample_path`)."""
    path = Path(str(files("leadsync.data").joinpath("templates", name)))
    if not path.is_file():
        raise LeadsyncError(f"the packaged template {name} is missing: reinstall leadsync")
    return path


def copy_templates(target: Path, *, force: bool = False) -> list[Path]:
    """Copy every packaged template into ``target`` (made if needed); an existing file
    is kept unless ``force``. Returns the files written."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for item in packaged("templates"):
        dest = target / item.name
        if dest.exists() and not force:
            raise LeadsyncError(f"{dest} already exists: choose another folder or add --force")
        with item.open("rb") as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out)
        written.append(dest)
    return written
