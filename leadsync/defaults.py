"""Every default setting, in one place. The config module layers the mapping file,
the environment and command-line flags over these."""

from __future__ import annotations

BASE_URL = "https://api.lead.pro/api/v103"
DATE_ORDER = "DMY"  # the API is British: 12/07/2025 is 12 July
TIMEZONE = "Europe/London"
REQUIRE_NAMES = True
CHUNK_ROWS = 20_000
# A worksheet with more XML than two of these is parsed in pieces of about this size, in
# a thread, while the rows already parsed are checked (~7,500 rows of 20 columns); 0 reads
# every sheet whole
XLSX_PIECE_BYTES = 8 << 20
REPORT_ROOT = "leadsync-reports"
# report.xlsx copies every row of a file up to this size; a larger file gets only the rows
# that need attention (a workbook is written at ~6,000 rows/s of 20 columns: a copy of a
# 100k-row export would take longer than validating it).
XLSX_FULL_ROWS = 25_000
XLSX_MAX_ROWS = 1_048_575  # Excel's limit, less the header
XLSX_MAX_COLUMNS = 16_384  # Excel's limit (XFD)
# A large file's report.xlsx holds at most this many rows that need attention (the CSV
# reports hold them all): ~7 us a cell, a million bad rows would take minutes to write
# and make a workbook nobody opens; the first 100,000 show what went wrong.
XLSX_ATTENTION_ROWS = 100_000
# Bad cells of this many rows get a comment; every bad cell is red and every row's
# problems are in its "leadsync problems" column. Each comment is a drawn shape: 10,000
# of them took ~0.8 s to write here, more than half of it after the last row.
XLSX_COMMENT_ROWS = 1_000

ENV_API_KEY = "LEADSYNC_API_KEY"
ENV_BASE_URL = "LEADSYNC_BASE_URL"
ENV_JOURNAL = "LEADSYNC_JOURNAL"
ENV_CA_BUNDLE = "LEADSYNC_CA_BUNDLE"
ENV_SMTP_URL = "LEADSYNC_SMTP_URL"  # smtp://user:password@host:587 (STARTTLS), smtps://...
ENV_SMTP_FROM = "LEADSYNC_SMTP_FROM"

# Notifications, pings and the metrics file together may hold a run's end up this long
# at most (each delivery is tried twice within it); one that fails is logged, never
# changes the exit code.
NOTIFY_BUDGET = 8.0  # seconds

# Sending (spec §4)
CONCURRENCY = 8  # requests in flight; latency hiding is the lever, not CPU
START_RATE = 4.0  # requests/s the adaptive throttle starts at
MAX_RATE = 50.0  # the adaptive throttle never goes above this (--max-rate)
CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 60.0  # seconds
MAX_ATTEMPTS = 6  # per row, first try included
BACKOFF_INITIAL = 0.5  # seconds, doubled per retry, with jitter
BACKOFF_MAX = 60.0
# The longest wait a server may ask for (Retry-After, X-RateLimit-Reset): past it the
# request goes out anyway (a 429 again counts as a retry), so a hostile or broken answer
# cannot stall a run until someone kills it.
MAX_WAIT = 300.0  # seconds
# Every request must be over within this, however slowly the server trickles its answer
# (the read timeout is per read, not per request).
REQUEST_DEADLINE = 120.0  # seconds
# What leadsync reads of any response body: a lead, a list of offices or an error is a
# few KB; a server that sends gigabytes is cut off, and the answer counts as unreadable.
MAX_RESPONSE_BYTES = 4 << 20
# After Ctrl-C or SIGTERM, the requests in flight get this long to be answered; past it
# their rows are reported unknown (the journal has them as sent and unanswered, so the
# next run reads those leads back before sending again) and the run ends: cron and
# systemd (TimeoutStopSec=90) kill a run that ignores them.
STOP_GRACE = 10.0  # seconds
BREAKER_THRESHOLD = 25  # consecutive rows that failed outright abort the run
PROGRESS_EVERY = 10.0  # seconds between log lines when not on a terminal

# The CLI collects reference cycles after this many allocations (Python's default is
# 700): a workbook arrives as millions of small objects and leadsync makes few cycles.
GC_THRESHOLD = (50_000, 20, 100)

# pyarrow's jemalloc pool (the CLI's on Linux) returns freed memory to the system after
# this many milliseconds (its default: 1,000). On the 1M-row mixed file: 200 ms peaked at
# 286 MB (297 MB at worst: the 300 MB budget), 20 ms at 251 MB at no measurable cost
# (farm-bench wall 0.996); 0 ms at 225 MB but 5% slower (a madvise per free)
ARROW_DECAY_MS = 20
