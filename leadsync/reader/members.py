"""A workbook's parts found as Excel and calamine find them: whatever the case of their
names (some writers store ``xl/SharedStrings.xml`` where the relations say
``sharedStrings.xml``; calamine reads it, so the number formats and the pieces must too)."""

from __future__ import annotations

from typing import Any


def member(z: Any, name: str) -> str:
    """The zip's own spelling of part ``name`` (matched without regard to ASCII case);
    ``name`` itself when the zip holds it or no part matches."""
    names = z.namelist()
    if name in names:
        return name
    wanted = name.lower()
    return next((n for n in names if n.lower() == wanted), name)


def read_member(z: Any, name: str) -> bytes:
    """The bytes of part ``name`` (see :func:`member`); ``KeyError`` when there is none."""
    return z.read(member(z, name))  # type: ignore[no-any-return]
