"""Files that hold personal data (reports, the journal): created owner-only (0600),
never written through a link someone planted, never taken over from another user."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

from leadsync.errors import LeadsyncError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has no symlink planting by users


class UnsafeFile(LeadsyncError):
    """A path leadsync will not write personal data to (exit 2)."""


def _check(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(f"{path} is not a regular file: refusing to write personal data to it")
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        raise UnsafeFile(
            f"{path} belongs to another user: refusing to write personal data to it "
            "(remove it, or choose another path)"
        )


def open_private(path: Path, mode: str = "w") -> IO[Any]:
    """Open ``path`` for writing (truncated), mode 0600. A symlink, another user's file or
    anything but a regular file is refused, before a byte of it is changed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | _NOFOLLOW, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeFile(
                f"{path} is a symbolic link: refusing to write personal data through it"
            ) from None
        raise exc
    try:
        _check(path, os.fstat(fd))
        os.ftruncate(fd, 0)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # it may have existed with wider permissions
    except BaseException:
        os.close(fd)
        raise
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8", newline="")


def ensure_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (so the files SQLite
    makes beside it, ``-wal`` and ``-shm``, take the same mode); if it does, refuse a
    link or another user's file, and take away group and other access."""
    if os.path.islink(path):
        raise UnsafeFile(f"{path} is a symbolic link: refusing to use it as the journal")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    except FileExistsError:
        _check(path, os.stat(path, follow_symlinks=False))
        for extra in ("", "-wal", "-shm"):
            target = Path(f"{path}{extra}")
            if target.exists() and not target.is_symlink():
                os.chmod(target, 0o600)
        return
    os.close(fd)
