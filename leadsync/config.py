"""One frozen settings object, built from mapping file → environment → flags.

A mapping file (TOML) describes how a particular export maps onto the API::

    [columns]                     # header in the file = target
    "Lead Ref" = "id"
    "Forename" = "first_name"
    "Budget" = "questionnaire: What is your budget?"
    "Source" = "meta: source"
    "Notes" = "ignore"

    [values.status]               # cell text (any case) = value sent
    contacted = "Contacted"

    [defaults]                    # used when a row leaves the field blank
    office_id = 1213

    [dates]
    order = "DMY"                 # or MDY, YMD
    timezone = "Europe/London"

    [rules]
    require_names = true
    statuses = ["New", "Contacted", "Valued"]   # optional allow-list
    optional_columns = ["Notes"]  # [columns] keys a file may lack (else: an error)

    [sending]                     # what a flag can set, and timeouts, retries, backoff
    max_rate = 20
    read_timeout = 30
    max_attempts = 6
    backoff_initial = 0.5         # seconds, doubled per retry, with jitter

    [guards]                      # refuse or stop a run that looks wrong (unattended runs)
    min_rows = 100
    max_shrink = 50               # percent of the last good run's rows
    max_invalid_rate = 0.1

    [notify]                      # tell someone how the run ended
    urls = ["https://hooks.slack.com/services/..."]
    on = "failure"                # or "always"
    ping = "https://hc-ping.com/<uuid>"
    metrics_file = "/var/lib/node_exporter/textfile/leadsync.prom"

A job file (:mod:`leadsync.job`) is a mapping file with a ``[run]`` section too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadsync import defaults as D
from leadsync.errors import MappingError
from leadsync.fields import (
    FIELD_KEYS,
    FIELDS_BY_NAME,
    ID_ALIASES,
    ID_HEADER,
    MATCH_ALIASES,
    Kind,
    normalise_header,
)

IGNORE = "ignore"
DATE_ORDERS = ("DMY", "MDY", "YMD")
_SECTIONS = {"columns", "values", "defaults", "dates", "rules", "sending", "guards", "notify"}
_GUARD_KEYS: dict[str, type | tuple[type, ...]] = {
    "min_rows": int,
    "max_shrink": (int, float),
    "max_invalid_rate": (int, float),
    "max_changes": int,
    "max_failure_rate": (int, float),
}
NOTIFY_ON = ("failure", "always")
_DATE_KEYS = {"order", "timezone"}
_RULE_KEYS = {"require_names", "statuses", "optional_columns", "name_order"}
FULL_NAME = "full_name"  # a [columns] target: split into first_name and last_name
NAME_ORDERS = ("first last", "last, first")
MATCH_TARGETS = {alias: kind for kind, aliases in MATCH_ALIASES.items() for alias in aliases}
# [sending]: the settings a flag can also give, and those only a file gives (timeouts,
# retries, backoff: a slow API's operator, and the tests, shorten or lengthen them)
_SENDING_KEYS: dict[str, type | tuple[type, ...]] = {
    "rate": (int, float),
    "max_rate": (int, float),
    "start_rate": (int, float),
    "concurrency": int,
    "connect_timeout": (int, float),
    "read_timeout": (int, float),
    "request_deadline": (int, float),
    "stop_grace": (int, float),
    "max_attempts": int,
    "backoff_initial": (int, float),
    "backoff_max": (int, float),
    "breaker_threshold": int,
    "max_changes": int,
    "max_failure_rate": (int, float),
    "check_offices": bool,
    "resend_ambiguous": bool,
}


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know besides the input file and the API key."""

    columns: Mapping[str, str] = field(default_factory=_empty)  # normalised header -> target
    # normalised header -> the key as the mapping file writes it (for messages)
    column_keys: Mapping[str, str] = field(default_factory=_empty)
    # normalised headers of [columns] keys a file may lack ([rules] optional_columns)
    optional_columns: frozenset[str] = frozenset()
    name_order: str = NAME_ORDERS[0]  # how a full_name column's words split
    # field -> casefolded cell text -> value
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)
    # field -> raw default (converted by the mapper)
    defaults: Mapping[str, Any] = field(default_factory=_empty)
    date_order: str = D.DATE_ORDER
    timezone: str = D.TIMEZONE
    require_names: bool = D.REQUIRE_NAMES
    statuses: tuple[str, ...] | None = None
    sheet: str | None = None
    chunk_rows: int = D.CHUNK_ROWS
    xlsx_piece_bytes: int = D.XLSX_PIECE_BYTES  # a larger sheet is parsed in pieces
    xlsx_full_rows: int = D.XLSX_FULL_ROWS
    xlsx_attention_rows: int = D.XLSX_ATTENTION_ROWS
    base_url: str = D.BASE_URL
    # sending
    rate: float | None = None  # pinned requests/s; None: adaptive
    max_rate: float = D.MAX_RATE
    start_rate: float = D.START_RATE
    concurrency: int = D.CONCURRENCY
    connect_timeout: float = D.CONNECT_TIMEOUT
    read_timeout: float = D.READ_TIMEOUT
    request_deadline: float = D.REQUEST_DEADLINE  # a whole request, however it trickles
    stop_grace: float = D.STOP_GRACE  # after a stop, how long rows in flight may take
    max_attempts: int = D.MAX_ATTEMPTS
    backoff_initial: float = D.BACKOFF_INITIAL
    backoff_max: float = D.BACKOFF_MAX
    breaker_threshold: int = D.BREAKER_THRESHOLD
    resend_ambiguous: bool = False
    ca_bundle: str | None = None  # a CA file for TLS behind an inspecting proxy
    match_by: str | None = None  # "email" or "phone": find rows' leads by contact detail
    create: bool = False  # --create: rows without a lead (no id, or none found) are created
    snapshot: bool = False  # --snapshot: GET each lead before its PATCH (before-values)
    check_offices: bool = True  # sync: check office_id against GET /offices first
    # guards for unattended runs
    max_changes: int | None = None  # refuse to send more than this many rows
    max_failure_rate: float | None = None  # stop when this share of sent rows fails
    min_rows: int | None = None  # refuse a file with fewer data rows
    max_shrink: float | None = None  # refuse fewer than this % of the last good run's rows
    max_invalid_rate: float | None = None  # refuse when more than this share is invalid
    # telling someone (spec §7): webhooks and mailto: addresses, when, a dead-man's
    # switch, a Prometheus textfile
    notify: tuple[str, ...] = ()
    notify_on: str = NOTIFY_ON[0]
    ping: str | None = None
    metrics_file: str | None = None
    keep_runs: float | None = None  # seconds: older runs are pruned (journal and reports)
    job_name: str | None = None  # the job, for --max-shrink's "last good run" and metrics
    report_root: str = D.REPORT_ROOT  # each run's reports: <report_root>/<run id>/
    mapping_path: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def with_flags(self, **flags: Any) -> Config:
        """A copy with the given settings replaced; ``None`` means "not given"."""
        given = {k: v for k, v in flags.items() if v is not None}
        return _checked(replace(self, **given))


def build_config(
    mapping: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    base: Config | None = None,
    **flags: Any,
) -> Config:
    """Layer the mapping file (or ``base``, a job file's settings), then the environment,
    then flags over the defaults."""
    config = load_mapping(mapping) if mapping is not None else (base or Config())
    env = env or {}
    if env.get(D.ENV_BASE_URL):
        config = replace(config, base_url=env[D.ENV_BASE_URL])
    if env.get(D.ENV_CA_BUNDLE):
        config = replace(config, ca_bundle=env[D.ENV_CA_BUNDLE])
    return config.with_flags(**flags)


def load_mapping(path: str | Path) -> Config:
    """Read a TOML mapping file into a :class:`Config`, or raise :class:`MappingError`."""
    p = Path(path)
    data = read_toml(p, "mapping file")
    try:
        return parse_mapping(data, source=str(p))
    except MappingError as exc:
        raise MappingError(f"mapping file {p}: {exc}") from None


def read_toml(p: Path, what: str) -> dict[str, Any]:
    """A TOML file's document, or a :class:`MappingError` naming ``what`` it is."""
    try:
        return tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise MappingError(f"{what} not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read {what} {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{what} {p} is not valid TOML: {exc}") from None


def parse_mapping(data: Mapping[str, Any], source: str | None = None) -> Config:
    """Turn the parsed TOML document into a :class:`Config`."""
    unknown = set(data) - _SECTIONS
    if unknown:
        raise MappingError(f"unknown section(s) {_names(unknown)}; expected {_names(_SECTIONS)}")
    written = _table(data, "columns")
    columns = {normalise_header(str(k)): _target(str(k), v) for k, v in written.items()}
    column_keys = {normalise_header(str(k)): str(k) for k in written}
    values: dict[str, Mapping[str, Any]] = {}
    for fname, table in _table(data, "values").items():
        _field_name(fname, "values")
        if not isinstance(table, dict):
            raise MappingError(f'[values.{fname}] must be a table of "cell text" = value')
        values[fname] = MappingProxyType({str(k).strip().casefold(): v for k, v in table.items()})
    defaults_ = dict(_table(data, "defaults"))
    for fname in defaults_:
        spec = _field_name(fname, "defaults")
        if spec.kind in (Kind.QUESTIONNAIRE, Kind.META):
            raise MappingError(f"[defaults] cannot set {fname}: it is appended or merged")
    dates = _table(data, "dates")
    _no_unknown(dates, _DATE_KEYS, "dates")
    rules = _table(data, "rules")
    _no_unknown(rules, _RULE_KEYS, "rules")
    statuses = rules.get("statuses")
    if statuses is not None and not (
        isinstance(statuses, list) and all(isinstance(s, str) for s in statuses)
    ):
        raise MappingError("[rules] statuses must be a list of strings")
    optional = rules.get("optional_columns", [])
    if not (isinstance(optional, list) and all(isinstance(h, str) for h in optional)):
        raise MappingError("[rules] optional_columns must be a list of column headers")
    name_order = rules.get("name_order", NAME_ORDERS[0])
    if name_order not in NAME_ORDERS:
        raise MappingError(
            f"[rules] name_order must be {' or '.join(map(repr, NAME_ORDERS))}, not {name_order!r}"
        )
    require = rules.get("require_names", D.REQUIRE_NAMES)
    if not isinstance(require, bool):
        raise MappingError("[rules] require_names must be true or false")
    sending = _typed(data, "sending", _SENDING_KEYS)
    sending.update(_typed(data, "guards", _GUARD_KEYS))
    sending.update(_notify_settings(_table(data, "notify")))
    config = Config(
        columns=MappingProxyType(columns),
        column_keys=MappingProxyType(column_keys),
        optional_columns=frozenset(normalise_header(h) for h in optional),
        name_order=name_order,
        values=MappingProxyType(values),
        defaults=MappingProxyType(defaults_),
        date_order=str(dates.get("order", D.DATE_ORDER)).upper(),
        timezone=str(dates.get("timezone", D.TIMEZONE)),
        require_names=require,
        statuses=tuple(statuses) if statuses is not None else None,
        mapping_path=source,
        **sending,
    )
    return _checked(config)


def _checked(config: Config) -> Config:
    if config.date_order not in DATE_ORDERS:
        raise MappingError(
            f"date order {config.date_order!r} is not one of {', '.join(DATE_ORDERS)}"
        )
    try:
        ZoneInfo(config.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"unknown time zone {config.timezone!r} (use a name like Europe/London)"
        ) from None
    if config.chunk_rows < 1:
        raise MappingError("chunk size must be at least 1 row")
    if config.rate is not None and config.rate <= 0:
        raise MappingError("--rate must be more than 0 requests per second")
    if config.max_rate <= 0:
        raise MappingError("--max-rate must be more than 0 requests per second")
    if config.concurrency < 1:
        raise MappingError("--concurrency must be at least 1")
    if config.max_attempts < 1:
        raise MappingError("attempts must be at least 1")
    if min(config.backoff_initial, config.backoff_max) < 0:
        raise MappingError("backoff seconds must be 0 or more")
    if not 0 <= config.stop_grace <= 3600:
        raise MappingError("[sending] stop_grace must be between 0 and 3600 seconds")
    if min(config.connect_timeout, config.read_timeout, config.request_deadline) <= 0:
        raise MappingError("timeouts must be more than 0 seconds")
    if config.ca_bundle is not None and not Path(config.ca_bundle).is_file():
        raise MappingError(f"CA bundle {config.ca_bundle} is not a file")
    if config.max_changes is not None and config.max_changes < 0:
        raise MappingError("--max-changes must be 0 or more")
    if config.max_failure_rate is not None and not 0 <= config.max_failure_rate <= 1:
        raise MappingError("--max-failure-rate must be a share between 0 and 1 (e.g. 0.05)")
    if config.min_rows is not None and config.min_rows < 0:
        raise MappingError("--min-rows must be 0 or more")
    if config.max_shrink is not None and not 0 <= config.max_shrink <= 100:
        raise MappingError("--max-shrink must be a percentage between 0 and 100 (e.g. 50)")
    if config.max_invalid_rate is not None and not 0 <= config.max_invalid_rate <= 1:
        raise MappingError("--max-invalid-rate must be a share between 0 and 1 (e.g. 0.1)")
    if config.notify_on not in NOTIFY_ON:
        raise MappingError(f"--notify-on must be {' or '.join(NOTIFY_ON)}")
    for target in (*config.notify, *([config.ping] if config.ping else [])):
        check_target(target)
    if config.keep_runs is not None and config.keep_runs <= 0:
        raise MappingError("--keep-runs must be more than 0 (e.g. 90d)")
    return config


def _typed(
    data: Mapping[str, Any], section: str, known: Mapping[str, type | tuple[type, ...]]
) -> dict[str, Any]:
    """A section of settings, each of the type it must have."""
    table = dict(_table(data, section))
    _no_unknown(table, set(known), section)
    for key, value in table.items():
        wanted = known[key]
        if isinstance(value, bool) != (wanted is bool) or not isinstance(value, wanted):
            kind = (
                "true or false"
                if wanted is bool
                else "a whole number"
                if wanted is int
                else "a number"
            )
            raise MappingError(f"[{section}] {key} must be {kind}, not {value!r}")
    return table


def _notify_settings(table: Mapping[str, Any]) -> dict[str, Any]:
    """``[notify]``: urls (a list), on, ping, metrics_file, as Config fields."""
    _no_unknown(table, {"urls", "on", "ping", "metrics_file"}, "notify")
    out: dict[str, Any] = {}
    urls = table.get("urls", [])
    if not (isinstance(urls, list) and all(isinstance(u, str) for u in urls)):
        raise MappingError("[notify] urls must be a list of https:// or mailto: addresses")
    if urls:
        out["notify"] = tuple(urls)
    for key, field_name in (
        ("on", "notify_on"),
        ("ping", "ping"),
        ("metrics_file", "metrics_file"),
    ):
        if key in table:
            if not isinstance(table[key], str):
                raise MappingError(f"[notify] {key} must be text")
            out[field_name] = table[key]
    return out


def check_target(target: str) -> str:
    """A notification or ping address: ``https://``, ``http://`` to this machine only
    (a test receiver), or ``mailto:``. Raises :class:`MappingError` otherwise."""
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    if parts.scheme == "mailto" and "@" in parts.path:
        return target
    if parts.scheme == "https" and parts.hostname:
        return target
    if parts.scheme == "http" and parts.hostname:
        from leadsync.addresses import is_loopback

        if is_loopback(parts.hostname):
            return target
        raise MappingError(
            f"{shown_target(target)}: plain http:// is refused except to this machine "
            "(the summary would travel unencrypted): use https://"
        )
    raise MappingError(f"{shown_target(target)} is not an https:// or mailto: address")


def shown_target(target: str) -> str:
    """A notification address as a message or a log line shows it: never a webhook's
    path or query (its secret)."""
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    if parts.scheme in ("http", "https") and parts.hostname:
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}/..."
    return repr(target[:40])


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` -> seconds; raises :class:`MappingError`."""
    value = text.strip().lower()
    number, unit = value[:-1], value[-1:]
    if unit not in _DURATION_UNITS or not number.replace(".", "", 1).isdigit():
        raise MappingError(f"{text!r} is not a duration like 90d, 12h, 2w, 30m")
    return float(number) * _DURATION_UNITS[unit]


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise MappingError(f"[{name}] must be a table")
    return table


def _no_unknown(table: Mapping[str, Any], known: set[str], section: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise MappingError(
            f"unknown key(s) {_names(unknown)} in [{section}]; expected {_names(known)}"
        )


def _field_name(name: str, section: str) -> Any:
    spec = FIELDS_BY_NAME.get(name)
    if spec is None:
        raise MappingError(f"[{section}] names {name!r}, which is not an API field")
    return spec


def _target(header: str, target: Any) -> str:
    """Check one ``[columns]`` target and return it in canonical form."""
    if not isinstance(target, str) or not target.strip():
        raise MappingError(f"[columns] {header!r} must map to a field name as a string")
    t = target.strip()
    prefix, sep, rest = t.partition(":")
    if sep and prefix.strip().lower() in ("questionnaire", "meta"):
        if not rest.strip():
            raise MappingError(f"[columns] {header!r} = {t!r} needs text after the colon")
        return f"{prefix.strip().lower()}: {rest.strip()}"
    norm = normalise_header(t)
    if norm == IGNORE:
        return IGNORE
    if norm in ID_ALIASES:
        return ID_HEADER
    if norm in MATCH_TARGETS:
        return MATCH_TARGETS[norm]
    if norm == normalise_header(FULL_NAME):
        return FULL_NAME
    if norm not in FIELD_KEYS:
        raise MappingError(
            f"[columns] {header!r} maps to {t!r}, which is not an API field, 'id', "
            "'full_name', 'email' or 'phone', 'questionnaire: <question>', "
            "'meta: <key>' or 'ignore'"
        )
    return FIELD_KEYS[norm]


def _names(items: set[str]) -> str:
    return ", ".join(sorted(items))


def read_api_key(
    env: Mapping[str, str], key_file: str | Path | None = None
) -> tuple[str, list[str]]:
    """The API key from ``--api-key-file`` or ``LEADSYNC_API_KEY``, and any warnings.

    Never from a command-line value: that would show in ``ps`` and shell history.
    """
    warnings: list[str] = []
    if key_file is not None:
        p = Path(key_file)
        try:
            with p.open("rb") as fh:
                data = fh.read(_KEY_FILE_MAX + 1)  # /dev/zero must not fill the memory
            mode = p.stat().st_mode
        except OSError as exc:
            raise MappingError(f"cannot read the API key file {p}: {exc.strerror or exc}") from None
        if len(data) > _KEY_FILE_MAX:
            raise MappingError(
                f"the API key file {p} is over {_KEY_FILE_MAX // 1024} KB: it should hold "
                "the key alone"
            )
        try:
            key = data.decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            raise MappingError(f"the API key file {p} is not UTF-8 text") from None
        if mode & 0o077:
            warnings.append(f"the API key file {p} can be read by other users: chmod 600 {p}")
        if not key:
            raise MappingError(f"the API key file {p} is empty")
        return _checked_key(key, f"the API key in {p}"), warnings
    key = env.get(D.ENV_API_KEY, "").strip()
    if not key:
        raise MappingError(f"no API key: set {D.ENV_API_KEY} or pass --api-key-file PATH")
    return _checked_key(key, f"${D.ENV_API_KEY}"), warnings


_KEY_FILE_MAX = 4096  # bytes: far more than any API key


def _checked_key(key: str, where: str) -> str:
    """Refuse a key that cannot be an HTTP header value: it would be quoted back in error
    messages (and so in reports), or fail deep in the HTTP library. The message never
    quotes the key."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise MappingError(
            f"{where} has a line break or another control character inside it: "
            "it must be the key alone, on one line"
        )
    if not key.isascii():
        raise MappingError(f"{where} has non-ASCII characters: an API key is plain ASCII")
    return key
