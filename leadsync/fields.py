"""The Lead API's fields: names, types, limits, and which operation takes each (spec §1,
§4b): one catalogue, two operations (``PATCH /leads/<id>`` updates, ``POST /leads``
creates).

This is the one place the rules live. The validator, the sandbox, the template writer and
the README all read it, so a change to the API's rules is a change to this file only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Operation(StrEnum):
    """What a request does with a row: update a lead, or create one."""

    UPDATE = "update"
    CREATE = "create"


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
    """One field of the Lead API: sent on updates, on creates, or both."""

    name: str
    kind: Kind
    description: str
    example: str
    required: bool = False  # on an update (first_name, last_name); creates: CREATE_REQUIRED
    min_chars: int | None = None
    max_chars: int | None = None
    max_json_bytes: int | None = None
    update: bool = True  # PATCH /leads/<id> takes it
    create: bool = True  # POST /leads takes it
    choices: tuple[str, ...] = ()  # the only values the API takes (empty: any)
    form: str | None = None  # a shape the text must have: "email", "phone" or "url"

    @property
    def create_only(self) -> bool:
        """Sent only when a lead is created (type, email, source, ...)."""
        return self.create and not self.update


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
    # -- the create endpoint's own fields (POST /leads, the docs' "Create Leads") ------
    Field(
        "type",
        Kind.STRING,
        "Create only, required: sale, let, vendor or landlord.",
        "sale",
        update=False,
        choices=("sale", "let", "vendor", "landlord"),
    ),
    Field(
        "email",
        Kind.STRING,
        "Create only: the person's email address (also what --match-by email finds).",
        "olivia.bennett@example.com",
        max_chars=255,
        update=False,
        form="email",
    ),
    Field(
        "phone",
        Kind.STRING,
        "Create only: the person's phone number, 7-15 digits.",
        "07700 900123",
        max_chars=50,
        update=False,
        form="phone",
    ),
    Field(
        "title", Kind.STRING, "Create only: Mr, Mrs, Ms, Dr ...", "Ms", max_chars=50, update=False
    ),
    Field(
        "advert_url",
        Kind.STRING,
        "Create only: the advert's web address (http:// or https://).",
        "https://www.rightmove.co.uk/properties/123456",
        max_chars=2048,
        update=False,
        form="url",
    ),
    Field(
        "message",
        Kind.STRING,
        "Create only: the enquiry's message.",
        "Is the garden south facing?",
        max_chars=5000,
        update=False,
    ),
    Field(
        "appointment_availability",
        Kind.STRING,
        "Create only: when the person can be seen.",
        "weekday evenings",
        max_chars=255,
        update=False,
    ),
    Field(
        "source",
        Kind.STRING,
        "Create only: where the lead came from (homepage if left blank).",
        "rightmove",
        update=False,
        choices=(
            "homepage",
            "rightmove",
            "rightmove_valuation",
            "zoopla",
            "zoopla_valuation",
            "onthemarket",
            "gumtree",
            "s1",
            "lettingweb",
            "propertypal",
            "ivt",
        ),
    ),
)

# Every value form the README promises, per field type, written as a CSV cell carries it.
# tests/test_contract.py feeds each one to every path (each must clear it column by
# column, with the reference's payload); a form added here is tested everywhere at once.
VALUE_FORMS: dict[Kind, tuple[str, ...]] = {
    Kind.DATE: (
        "2025-07-12",
        "12/07/2025",
        "12-07-2025",
        "12.07.25",
        "2025/7/12",
        "2025-07-12T10:00:00Z",
        "2025-07-12T10:00:00+01:00",
        "2025-07-12T10:00:00+0100",
        "2025-07-12T10:00:00.250Z",
        "2025-07-12 14:30",
        "2025-07-12T14:30:15",
        "12/07/2025 14:30",
        "12/07/2025 2:30 pm",
        "12 July 2025",
        "12th Jul 2025",
        "July 12, 2025",
        "2025-10-26 01:30",  # a British clock shows it twice
        "2025-03-30 01:30",  # ... and never
        "45850",  # an Excel serial (a date cell that lost its format)
        "45850.5625",  # ... with a time: 13:30 in the configured zone
    ),
    Kind.INTEGER: ("1213", "1213.0", "1,213", "+1213"),
    # every spelling, in both cases, and the ticks
    Kind.BOOLEAN: (*("yes", "no", "Y", "n", "TRUE", "false", "T", "f", "1", "0"), *"✓✔☑✗✘☐"),
}

FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(FIELDS_BY_NAME)
REQUIRED_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
UPDATE_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.update)
CREATE_ONLY_NAMES: frozenset[str] = frozenset(f.name for f in FIELDS if f.create_only)

# -- the create rules (POST /leads) --------------------------------------------------
# Every create needs a type and a name. The type then decides the address: a vendor or
# landlord (someone with a property to sell or let) gives their own address and must give
# its postcode; a buyer or tenant (sale, let) enquires about an advertised property, whose
# address and postcode the lead must carry.
CREATE_REQUIRED: tuple[str, ...] = ("type", "first_name", "last_name")
TYPE_NEEDS: dict[str, tuple[str, ...]] = {
    "vendor": ("postcode",),
    "landlord": ("postcode",),
    "sale": ("advert_address", "advert_postcode"),
    "let": ("advert_address", "advert_postcode"),
}
TYPE_REFUSES: dict[str, tuple[str, ...]] = {
    "vendor": ("advert_address", "advert_postcode"),
    "landlord": ("advert_address", "advert_postcode"),
}
DEFAULT_SOURCE = "homepage"  # what the API records when no source is sent


def update_part(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a mapped payload a ``PATCH`` carries: without the create-only fields
    (the payload itself when it has none)."""
    if CREATE_ONLY_NAMES.isdisjoint(payload) and isinstance(payload, dict):
        return payload
    return {k: v for k, v in payload.items() if k not in CREATE_ONLY_NAMES}


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
# the contact-detail aliases name the create fields too ("Email Address" -> email)
FIELD_KEYS.update({alias: name for name, aliases in MATCH_ALIASES.items() for alias in aliases})
