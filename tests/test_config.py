"""Config: mapping file → environment → flags, one frozen object, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from leadsync.config import Config, build_config, load_mapping
from leadsync.errors import MappingError
from tests.conftest import ROOT


def test_example_mapping_loads() -> None:
    config = load_mapping(ROOT / "templates" / "mapping.example.toml")
    assert config.columns["leadref"] == "id"
    assert config.columns["budget"] == "questionnaire: What is your budget?"
    assert config.values["office_id"]["bristol"] == 1213
    assert config.date_order == "DMY" and config.require_names is True


def test_layering_mapping_then_env_then_flags(tmp_path: Path) -> None:
    m = tmp_path / "m.toml"
    m.write_text('[dates]\norder = "mdy"\n[rules]\nrequire_names = false\n', encoding="utf-8")
    env = {"LEADSYNC_BASE_URL": "http://127.0.0.1:9/api/v103"}
    config = build_config(m, env, sheet="Export", date_order=None)
    assert (config.date_order, config.require_names, config.sheet, config.base_url) == (
        "MDY",
        False,
        "Export",
        "http://127.0.0.1:9/api/v103",
    )
    assert build_config(m, env, base_url="https://x.test").base_url == "https://x.test"


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().sheet = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[dates]\norder = "DDM"\n', "date order 'DDM' is not one of DMY, MDY, YMD"),
        ('[dates]\ntimezone = "Mars/Olympus"\n', "unknown time zone 'Mars/Olympus'"),
        ('[dates]\nzone = "UTC"\n', "unknown key(s) zone in [dates]"),
        ('[rules]\nrequire_names = "no"\n', "[rules] require_names must be true or false"),
        ('[values.colour]\nred = "Red"\n', "[values] names 'colour', which is not an API field"),
        ("[defaults]\nquestionnaire = 1\n", "[defaults] cannot set questionnaire"),
        ('[columns]\nX = "meta:"\n', "[columns] 'X' = 'meta:' needs text after the colon"),
        ("[sending]\nretries = 3\n", "unknown key(s) retries in [sending]"),
        ('[sending]\nmax_attempts = "3"\n', "[sending] max_attempts must be a whole number"),
        ("[sending]\nmax_attempts = true\n", "[sending] max_attempts must be a whole number"),
        ("[sending]\ncheck_offices = 1\n", "[sending] check_offices must be true or false"),
        ("[sending]\nbackoff_initial = -1\n", "backoff seconds must be 0 or more"),
    ],
)
def test_bad_mappings_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    m = tmp_path / "m.toml"
    m.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_mapping(m)
    assert message in str(info.value)


def test_sending_section_sets_retries_and_backoff_and_flags_still_win(tmp_path: Path) -> None:
    m = tmp_path / "m.toml"
    m.write_text(
        "[sending]\nmax_rate = 12\nmax_attempts = 3\nbackoff_initial = 0.01\n"
        "read_timeout = 5\ncheck_offices = false\n",
        encoding="utf-8",
    )
    config = build_config(m, {}, max_rate=30.0)
    assert (config.max_rate, config.max_attempts, config.backoff_initial) == (30.0, 3, 0.01)
    assert (config.read_timeout, config.check_offices) == (5, False)
