"""Every default setting, in one place. The config module layers the mapping file,
the environment and command-line flags over these."""

from __future__ import annotations

BASE_URL = "https://api.lead.pro/api/v103"
DATE_ORDER = "DMY"  # the API is British: 12/07/2025 is 12 July
TIMEZONE = "Europe/London"
REQUIRE_NAMES = True
CHUNK_ROWS = 20_000
REPORT_ROOT = "leadsync-reports"
# Cells above this many rows are not copied into report.xlsx row by row; see report.py.
XLSX_REPORT_MAX_ROWS = 1_048_575

ENV_API_KEY = "LEADSYNC_API_KEY"
ENV_BASE_URL = "LEADSYNC_BASE_URL"
