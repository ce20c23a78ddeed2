"""leadsync: apply spreadsheet rows to the Lead API, safely.

The library works without the CLI::

    import leadsync
    result = leadsync.validate("export.xlsx", report_dir="out")
    print(result.exit_code, result.summary["outcomes"])
    result = leadsync.sync("export.xlsx", leadsync.Config(), api_key=key)

Heavy modules (pyarrow, XlsxWriter, requests) load on first use, so ``leadsync --help``
stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from leadsync.api import RunResult, mapped_rows, sync, validate
    from leadsync.config import Config, build_config, load_mapping

__all__ = [
    "Config",
    "RunResult",
    "__version__",
    "build_config",
    "load_mapping",
    "mapped_rows",
    "sync",
    "validate",
]

_LAZY = {
    "validate": "leadsync.api",
    "sync": "leadsync.api",
    "mapped_rows": "leadsync.api",
    "RunResult": "leadsync.api",
    "Config": "leadsync.config",
    "build_config": "leadsync.config",
    "load_mapping": "leadsync.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'leadsync' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
