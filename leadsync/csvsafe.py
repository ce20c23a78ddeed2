"""CSV injection: a cell a spreadsheet would run as a formula is written with a leading
``'`` (:func:`neutralise`), and read back without it (:func:`unneutralise`). The columnar
writers use :data:`FORMULA_START` for the same rule on whole columns."""

from __future__ import annotations

# a spreadsheet may run a cell that starts with one of these (OWASP's list)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """Stop a spreadsheet from running a cell as a formula (CSV injection)."""
    return "'" + text if text.startswith(FORMULA_START) else text


def unneutralise(text: str) -> str:
    """Undo :func:`neutralise` when a leadsync report is read back as input."""
    if text.startswith("'") and text[1:].startswith(FORMULA_START):
        return text[1:]
    return text
