"""What each column of a file means: the lead id, a field, a question, a meta key, a
--match-by column, or nothing (decided once per file, :func:`plan_columns`)."""

from __future__ import annotations

from leadsync.config import FULL_NAME, IGNORE, Config
from leadsync.errors import InputError, MappingError, shown
from leadsync.fields import (
    FIELD_KEYS,
    FIELDS_BY_NAME,
    ID_ALIASES,
    ID_HEADER,
    MATCH_ALIASES,
    normalise_header,
)
from leadsync.mapper.convert import Bad, convert_value
from leadsync.model import ColumnPlan, Target, report_prefix
from leadsync.reader import Table, cell_text, column_letter


def plan_columns(headers: tuple[str, ...], config: Config, first_column: int = 0) -> ColumnPlan:
    """Decide what every header maps to; raise :class:`InputError` for a file-level fault.
    ``first_column``: where the sheet's first column stands (its letters are the ones a
    mapping file's ``"column F"`` keys name)."""
    prefix = report_prefix(headers)
    targets = header_targets(headers, config, first_column)
    seen: dict[tuple[str, str], int] = {}
    for i, t in enumerate(targets):
        if t is None or t.kind == "ignore":
            continue
        key = (t.kind, t.name)
        if key in seen:
            what = "the lead id" if t.kind == "id" else _target_text(t)
            first = seen[key]
            letter = column_letter(first_column + i)
            raise InputError(
                f"columns {shown(headers[first])!r} ({column_letter(first_column + first)}) "
                f"and {shown(headers[i])!r} ({letter}) both map to {what}: rename one, or "
                f'put "column {letter}" = "ignore" under [columns] in a mapping file'
            )
        seen[key] = i
    _check_mapping_keys(headers, targets, config, first_column)
    id_index = seen.get(("id", ID_HEADER))
    match_index = seen.get(("match", config.match_by or ""))
    if config.match_by is not None and match_index is None:
        raise InputError(
            f"--match-by {config.match_by} needs a column headed {config.match_by!r} "
            "(or map yours to it in the mapping file)"
        )
    if id_index is None and match_index is None and not config.create:
        raise InputError(
            "no lead id column: add a column headed 'id', 'lead_id' or 'Lead ID', or map "
            'your id column in the mapping file ([columns] "Your header" = "id"); or '
            "create the leads with --create"
        )
    if config.create and not any(t is not None and t.kind not in ("ignore", "id") for t in targets):
        # --create needs no id column, but a file none of whose columns is a field (a
        # file that is not an export of leads at all) would only be "skipped"
        raise InputError(
            "none of the columns is a field of the Lead API (first_name, last_name, type, "
            "email ...): check the header row, or map your headers in a mapping file"
        )
    defaults = {}
    for fname, raw in config.defaults.items():
        if FIELDS_BY_NAME[fname].create_only and not config.create:
            continue  # a default for new leads: only --create sends it
        value = convert_value(raw, FIELDS_BY_NAME[fname], config)
        if isinstance(value, Bad):
            raise MappingError(f"[defaults] {fname} = {raw!r}: {value.message}")
        defaults[fname] = value
    unmapped = tuple(h for h, t in zip(headers, targets, strict=True) if t is None)
    return ColumnPlan(
        headers,
        tuple(targets),
        id_index,
        unmapped,
        defaults,
        report_row_index=0 if prefix else None,
        match_index=match_index,
    )


def header_targets(
    headers: tuple[str, ...], config: Config, first_column: int = 0
) -> list[Target | None]:
    """What each header maps to, one by one (None: unmapped), before the file-level
    checks :func:`plan_columns` makes (an id column, no target twice)."""
    prefix = report_prefix(headers)
    targets: list[Target | None] = [Target("ignore")] * prefix
    for i, header in enumerate(headers[prefix:], start=prefix):
        by_letter = config.columns.get(letter_key(column_letter(first_column + i)))
        targets.append(_target_for(header, config, by_letter))
    return targets


def letter_key(letter: str) -> str:
    """The [columns] key that names a column by its letter: ``"column F"``."""
    return normalise_header(f"column {letter}")


def _check_mapping_keys(
    headers: tuple[str, ...], targets: list[Target | None], config: Config, first_column: int
) -> None:
    """A [columns] key that matches no header, or a [values] table for a field no column
    maps to, is a typo until said otherwise: the column it meant would be silently
    dropped. (A key mapped to 'ignore' may be missing: ignoring nothing is harmless.)"""
    import difflib

    present = {normalise_header(h): h for h in headers}
    present.update({letter_key(column_letter(first_column + i)): h for i, h in enumerate(headers)})
    for norm, target in config.columns.items():
        if norm in present or norm in config.optional_columns or target == IGNORE:
            continue
        key = config.column_keys.get(norm, norm)
        close = difflib.get_close_matches(key, list(present.values()), n=1, cutoff=0.6)
        hint = f"; did you mean {shown(close[0])!r}?" if close else ""
        raise MappingError(
            f"{_where(config)}[columns] {shown(key)!r} matches no column of the file{hint} "
            "(list it in [rules] optional_columns if the file may lack it)"
        )
    mapped = {t.name for t in targets if t is not None and t.kind in ("field", "match")}
    for fname in config.values:
        if FIELDS_BY_NAME[fname].create_only and not config.create:
            continue  # values for new leads' columns, which only --create reads
        if fname not in mapped:
            raise MappingError(
                f"{_where(config)}[values.{fname}] gives values for {fname}, but no column "
                f"of the file maps to {fname}: map one in [columns], or remove the table"
            )


def _where(config: Config) -> str:
    return f"mapping file {config.mapping_path}: " if config.mapping_path else ""


def plan_table(table: Table, config: Config) -> ColumnPlan:
    """:func:`plan_columns` for an opened file. When it has no id column but one of its
    first rows would have been a header with one (a title above the real header), the
    error says which row."""
    try:
        plan = plan_columns(table.headers, config, table.first_column)
    except InputError as exc:
        if not str(exc).startswith("no lead id column"):
            raise
        for number, cells in table.first_rows(10):
            targets = (_target_for(cell_text(c), config) for c in cells if cell_text(c))
            if any(t is not None and t.kind == "id" for t in targets):
                raise InputError(
                    f"no lead id column in row {table.header_row}, the header row; row "
                    f"{number} looks like the header: delete the rows above it"
                ) from None
        raise
    table.notices.extend(misspelt_headers(plan, config))
    return plan


_LOOKED_AT = 200  # unmapped headers compared with the field names (a 10,000-column export)


def misspelt_headers(plan: ColumnPlan, config: Config) -> list[str]:
    """A notice for each unmapped header that is nearly the name of a field no column
    sends (``frist name``): its cells would be left out of every row without a word."""
    import difflib

    sent = {t.name for t in plan.targets if t is not None and t.kind == "field"}
    names = {
        key: fname
        for key, fname in FIELD_KEYS.items()
        if fname not in sent and (config.create or not FIELDS_BY_NAME[fname].create_only)
    }
    found = []
    for header in plan.unmapped[:_LOOKED_AT]:
        key = normalise_header(header)
        if key in FIELD_KEYS or len(key) > 40:
            continue  # a field's own name left out on purpose (a create's email on an update)
        close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.8)
        if close:
            fname = names.pop(close[0])
            found.append(
                f"column {shown(header)!r} is not sent; if it holds {fname}, name the header "
                f'{fname!r}, or map it in a mapping file ([columns] "{shown(header)}" = '
                f'"{fname}")'
            )
    return found


def _target_for(header: str, config: Config, by_letter: str | None = None) -> Target | None:
    norm = normalise_header(header)
    mapped = by_letter if by_letter is not None else config.columns.get(norm)
    text = mapped if mapped is not None else header.strip()
    prefix, sep, rest = text.partition(":")
    if not sep and "." in text and mapped is None:
        prefix, sep, rest = text.partition(".")
        if normalise_header(prefix) != "meta":
            prefix, sep, rest = text, "", ""
    if sep and rest.strip():
        kind = normalise_header(prefix)
        if kind == "questionnaire":
            return Target("question", rest.strip())
        if kind == "meta":
            return Target("meta", rest.strip())
    key = normalise_header(text)
    if (key == IGNORE and mapped is not None) or key in _REPORT_COLUMNS:
        return Target("ignore")
    if mapped == FULL_NAME:
        return Target("name", FULL_NAME)
    if key in ID_ALIASES:
        return Target("id", ID_HEADER)
    if config.match_by is not None and key in MATCH_ALIASES[config.match_by]:
        return Target("match", config.match_by)  # with --create, also the new lead's
    if key in FIELD_KEYS:
        fname = FIELD_KEYS[key]
        if FIELDS_BY_NAME[fname].create_only and not config.create:
            return None  # type, email, source ...: sent only when a lead is created
        return Target("field", fname)
    return None


# report.xlsx's own columns: a report fed back in as the next input sends neither
_REPORT_COLUMNS = frozenset({"leadsyncoutcome", "leadsyncproblems", "leadsyncleadid"})


def _target_text(t: Target) -> str:
    if t.kind == "question":
        return f"the question {t.name!r}"
    if t.kind == "meta":
        return f"meta key {t.name!r}"
    return t.name
