"""Mapper stage: spreadsheet columns → API fields, cell values → JSON values (spec §3).

The mapper decides what each column means (:mod:`.plan`, once per file) and then converts
each chunk: row by row (:mod:`.rows`, the reference) or column by column (:mod:`.columns`,
the fast path), both through the one set of conversions in :mod:`.convert`. A blank cell
leaves its field out of the payload; a cell that cannot be converted becomes a
:class:`~leadsync.model.Problem`, never an exception. The API's own rules (lengths, sizes,
shapes) are the validator's business.
"""

from leadsync.fields import MATCH_ALIASES
from leadsync.mapper.columns import (
    ColumnarRows,
    Judgments,
    fast_path_applies,
    fields_sent,
    map_columns,
    payload_json,
)
from leadsync.mapper.convert import (
    BLANK,
    Bad,
    convert_value,
    lead_id_missing,
    lead_id_text,
    lead_id_texts,
    to_boolean,
    to_integer,
    to_iso_date,
)
from leadsync.mapper.plan import header_targets, plan_columns, plan_table
from leadsync.mapper.rows import map_chunk, one_per_row

__all__ = [
    "BLANK",
    "MATCH_ALIASES",
    "Bad",
    "ColumnarRows",
    "Judgments",
    "convert_value",
    "fast_path_applies",
    "fields_sent",
    "header_targets",
    "lead_id_missing",
    "lead_id_text",
    "lead_id_texts",
    "map_chunk",
    "map_columns",
    "one_per_row",
    "payload_json",
    "plan_columns",
    "plan_table",
    "to_boolean",
    "to_integer",
    "to_iso_date",
]
