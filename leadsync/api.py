"""The library API: what the CLI calls, usable on its own. A short facade: each job
lives in the module named for it (:mod:`leadsync.run` for validation runs,
:mod:`leadsync.engine` for syncs, :mod:`leadsync.planner` for plans).

>>> result = leadsync.validate("export.xlsx")          # doctest: +SKIP
>>> result.exit_code, result.summary["outcomes"]["invalid"]   # doctest: +SKIP
"""

from __future__ import annotations

import threading

from leadsync.client import LeadClient
from leadsync.config import Config
from leadsync.engine import sync
from leadsync.planner import Change, plan
from leadsync.run import RunResult, mapped_rows, validate
from leadsync.sender import RowSender
from leadsync.throttle import Throttle

__all__ = ["Change", "RunResult", "list_offices", "mapped_rows", "plan", "sync", "validate"]


def list_offices(config: Config, api_key: str) -> list[tuple[int | str, str]]:
    """The account's offices as (id, name), through the same retried GET as a sync."""
    client = LeadClient(config.base_url, api_key, config)  # which checks the URL
    try:
        return RowSender(client, Throttle(config), config, threading.Event()).offices()
    finally:
        client.close()
