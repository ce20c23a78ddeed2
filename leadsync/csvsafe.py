"""CSV injection: a cell a spreadsheet would run as a formula is written with a leading
``'`` (:func:`neutralise`), and read back without it (:func:`unneutralise`). The columnar
writers read the same rule, :data:`FORMULA_RE`, on whole columns."""

from __future__ import annotations

import re

# A spreadsheet may run a cell that starts with = + - @, a tab or a CR (OWASP's list), or
# with = + - @ after spaces or line breaks, or in their full-width forms: the one rule,
# as a pattern both Python and pyarrow (RE2) read
FORMULA_RE = "^(?:[\t\r]|[ \n]*[=+\\-@\uff1d\uff0b\uff0d\uff20])"
_FORMULA = re.compile(FORMULA_RE)


def is_formula(text: str) -> bool:
    """Whether a spreadsheet could run ``text`` as a formula."""
    return _FORMULA.match(text) is not None


def neutralise(text: str) -> str:
    """Stop a spreadsheet from running a cell as a formula (CSV injection)."""
    return "'" + text if is_formula(text) else text


def unneutralise(text: str) -> str:
    """Undo :func:`neutralise` when a leadsync report is read back as input."""
    if text.startswith("'") and is_formula(text[1:]):
        return text[1:]
    return text
