"""The mapping page's form, to and from the mapping document (the TOML file the CLI
reads with ``--mapping``). The document is checked by :func:`leadsync.config.parse_mapping`
like any mapping file; this module only moves values between the form and the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import tomli_w

from leadsync.config import DATE_ORDERS, FULL_NAME, IGNORE, Config
from leadsync.fields import FIELDS, Kind
from leadsync.mapper import header_targets
from leadsync.model import Target

NOT_MAPPED = ""
BLANK_VALUE_LINES = 3  # empty lines offered below the value maps already there


def target_text(t: Target | None) -> str:
    """A column's target as a ``[columns]`` value ("" when unmapped)."""
    if t is None:
        return NOT_MAPPED
    if t.kind == "question":
        return f"questionnaire: {t.name}"
    if t.kind == "meta":
        return f"meta: {t.name}"
    if t.kind == "ignore":
        return IGNORE
    if t.kind == "name":
        return FULL_NAME
    return t.name  # id, a field, email/phone (--match-by)


def auto_targets(headers: tuple[str, ...], config: Config) -> list[str]:
    """What each header maps to by its name alone (no [columns] entries), as text."""
    bare = replace(config, columns={}, column_keys={}, optional_columns=frozenset())
    return [target_text(t) for t in header_targets(headers, bare)]


def current_targets(headers: tuple[str, ...], config: Config) -> list[str]:
    """What each header maps to under ``config`` (its [columns] entries applied)."""
    return [target_text(t) for t in header_targets(headers, config)]


def choices(header: str, current: str, config: Config) -> list[tuple[str, str]]:
    """The targets a column may take: (value, label), the current one among them."""
    found = [(NOT_MAPPED, "(not mapped: reported, not sent)"), ("id", "id (the lead id)")]
    found += [(f.name, f.name) for f in FIELDS if f.update or config.create]
    found += [
        (FULL_NAME, "full_name (split into first and last name)"),
        (f"questionnaire: {header.strip()}", f"questionnaire: {header.strip()}"),
        (f"meta: {header.strip()}", f"meta: {header.strip()}"),
        (IGNORE, "ignore (not sent, not reported)"),
    ]
    if current not in {v for v, _ in found}:
        found.insert(1, (current, current))
    return found


def value_lines(doc: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The document's value maps as (field, cell text, value sent) lines."""
    lines = []
    for fname, table in (doc.get("values") or {}).items():
        for text, value in table.items():
            lines.append((fname, str(text), _shown(value)))
    return lines


def default_values(doc: Mapping[str, Any]) -> dict[str, str]:
    return {k: _shown(v) for k, v in (doc.get("defaults") or {}).items()}


def doc_from_form(
    form: Mapping[str, str], headers: tuple[str, ...], base: Mapping[str, Any], auto: list[str]
) -> dict[str, Any]:
    """The mapping document the form describes, over ``base`` (its other sections kept).

    [columns] holds only the columns whose target is not what their header maps to by
    itself, so the file goes on working when an export gains or reorders columns."""
    doc: dict[str, Any] = {
        k: v for k, v in base.items() if k not in ("columns", "values", "defaults")
    }
    columns: dict[str, str] = {}
    for i, header in enumerate(headers):
        chosen = form.get(f"column-{i}", NOT_MAPPED).strip()
        if chosen != auto[i] and chosen != NOT_MAPPED:
            columns[header] = chosen
    values: dict[str, dict[str, Any]] = {}
    for n in sorted(
        {int(m.group(1)) for k in form if (m := re.fullmatch(r"value-field-(\d+)", k))}
    ):
        fname, text = form.get(f"value-field-{n}", ""), form.get(f"value-text-{n}", "").strip()
        if fname and text:
            values.setdefault(fname, {})[text] = _typed(form.get(f"value-sent-{n}", ""))
    defaults = {
        f.name: _typed(form[f"default-{f.name}"])
        for f in FIELDS
        if form.get(f"default-{f.name}", "").strip()
    }
    dates = dict(base.get("dates") or {})
    if form.get("date-order") in DATE_ORDERS:
        dates["order"] = form["date-order"]
    if form.get("timezone", "").strip():
        dates["timezone"] = form["timezone"].strip()
    for name, section in (("columns", columns), ("values", values), ("defaults", defaults)):
        if section:
            doc[name] = section
    if dates:
        doc["dates"] = dates
    return doc


def to_toml(doc: Mapping[str, Any]) -> str:
    """The mapping document as the TOML file `leadsync --mapping` reads."""
    head = "# leadsync mapping file, saved by `leadsync ui`: use it with --mapping\n"
    return head + tomli_w.dumps(dict(doc))


def default_fields() -> list[tuple[str, str]]:
    """The fields a default may be given for (not questionnaire or meta): (name, kind)."""
    return [(f.name, f.kind.value) for f in FIELDS if f.kind not in (Kind.QUESTIONNAIRE, Kind.META)]


def _typed(text: str) -> Any:
    """A value typed in the form as TOML would hold it: true/false, a whole number, text."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if re.fullmatch(r"-?\d{1,15}", t):
        return int(t)
    return t


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
