"""The Lead API's update fields: names, types and limits (spec §1).

This is the one place the rules live. The validator, the sandbox, the template writer and
the README all read it, so a change to the API's rules is a change to this file only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """The JSON type a field is sent as."""

    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"  # ISO 8601 string: YYYY-MM-DD or a UTC date-time ending in Z
    QUESTIONNAIRE = "questionnaire"  # array of [question, answer] string pairs
    META = "meta"  # object of string -> string


@dataclass(frozen=True)
class Field:
    """One updatable field of `PATCH /leads/<id>`."""

    name: str
    kind: Kind
    description: str
    example: str
    required: bool = False
    min_chars: int | None = None
    max_chars: int | None = None
    max_json_bytes: int | None = None


FIELDS: tuple[Field, ...] = (
    Field(
        "first_name",
        Kind.STRING,
        "Lead's first name, 1-50 characters.",
        "Olivia",
        required=True,
        min_chars=1,
        max_chars=50,
    ),
    Field(
        "last_name",
        Kind.STRING,
        "Lead's last name, 1-50 characters.",
        "Bennett",
        required=True,
        min_chars=1,
        max_chars=50,
    ),
    Field(
        "address",
        Kind.STRING,
        "Lead's address, up to 255 characters.",
        "14 Elm Grove, Bristol",
        max_chars=255,
    ),
    Field(
        "postcode", Kind.STRING, "Lead's postcode, up to 255 characters.", "BS7 8QR", max_chars=255
    ),
    Field(
        "advert_address",
        Kind.STRING,
        "Address of the advertised property, up to 255.",
        "3 Mill Lane, Bath",
        max_chars=255,
    ),
    Field(
        "advert_postcode",
        Kind.STRING,
        "Postcode of the advertised property, up to 255.",
        "BA1 5AB",
        max_chars=255,
    ),
    Field("status", Kind.STRING, "Status of the lead.", "Contacted"),
    Field("office_id", Kind.INTEGER, "Id of one of the account's offices (whole number).", "1213"),
    Field("gdpr_checkbox", Kind.BOOLEAN, "GDPR consent: yes/no, true/false, 1/0, y/n.", "yes"),
    Field(
        "next_action_date",
        Kind.DATE,
        "Next action: 2025-07-12, 12/07/2025 (day first) or a date-time.",
        "12/07/2025",
    ),
    Field(
        "questionnaire",
        Kind.QUESTIONNAIRE,
        "JSON array of [question, answer] pairs, appended to the lead's answers "
        "(at most 2048 JSON bytes). Easier: one column per question headed "
        "'questionnaire: <question>'.",
        '[["Budget?", "£350k"]]',
        max_json_bytes=2048,
    ),
    Field(
        "meta",
        Kind.META,
        "JSON object of string values (at most 1024 JSON bytes). Easier: one column "
        "per key headed 'meta: <key>'.",
        '{"source": "crm"}',
        max_json_bytes=1024,
    ),
    Field("utm_source", Kind.STRING, "Lead journey: UTM source.", "rightmove"),
    Field("utm_medium", Kind.STRING, "Lead journey: UTM medium.", "portal"),
    Field("utm_campaign", Kind.STRING, "Lead journey: UTM campaign.", "spring-valuations"),
    Field("utm_term", Kind.STRING, "Lead journey: UTM term.", "valuation"),
    Field("utm_content", Kind.STRING, "Lead journey: UTM content.", "banner-a"),
    Field("utm_gclid", Kind.STRING, "Google click id.", "EAIaIQobChMI"),
)

FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(FIELDS_BY_NAME)
REQUIRED_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)

# Headers that name the lead id column, after header normalisation ("Lead ID" -> "leadid").
ID_ALIASES: frozenset[str] = frozenset({"id", "leadid"})
ID_HEADER = "id"

# Contact-detail headers --match-by looks leads up by (lookup keys, not update fields),
# after header normalisation; a [columns] target may name them too.
MATCH_ALIASES: dict[str, frozenset[str]] = {
    "email": frozenset({"email", "emailaddress"}),
    "phone": frozenset({"phone", "phonenumber", "mobile", "telephone"}),
}

API_VERSION_PATH = "/api/v103"


def php_json(value: Any) -> str:
    """Encode ``value`` as PHP's ``json_encode`` does with default flags.

    Compact separators, every non-ASCII character as ``\\uXXXX`` (astral ones as a
    surrogate pair) and ``/`` escaped as ``\\/``. The server most likely measures sizes
    this way; it is also the largest of the usual encodings, so it is the safe measure.
    """
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


def json_size(value: Any) -> int:
    """Size in bytes of ``value`` as the server measures it (see :func:`php_json`)."""
    return len(php_json(value))


_HEADER_SEPARATORS = str.maketrans({"-": " ", "_": " ", "\u00a0": " "})


def normalise_header(header: str) -> str:
    """The matching key of a header: ``First Name``, ``first_name``, ``FIRST-NAME`` and
    ``firstname`` all become ``firstname``."""
    return "".join(header.translate(_HEADER_SEPARATORS).casefold().split())


# matching key -> field name ("firstname" -> "first_name")
FIELD_KEYS: dict[str, str] = {normalise_header(f.name): f.name for f in FIELDS}
