"""Secrets from `${NAME}`: which values the config loader counts as secrets, and how
core/masking.py shows them as their names instead."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from orchestrator.config.settings import load_config
from orchestrator.core.errors import ConfigError
from orchestrator.core.masking import MaskingFilter, mask, mask_fields
from orchestrator.observe.logging_setup import JsonFormatter, TextFormatter

TOKEN = "tk-5e1f0c9a"


def test_every_occurrence_of_a_secret_becomes_its_name():
    assert mask(f"curl -H 'X: {TOKEN}' https://h/{TOKEN}", {"TOKEN": TOKEN}) == (
        "curl -H 'X: ${TOKEN}' https://h/${TOKEN}")


def test_a_secret_that_holds_another_is_masked_whole_and_nothing_twice():
    secrets = {"SHORT": "abcd", "LONG": "xx-abcd-yy"}
    assert mask("xx-abcd-yy and abcd", secrets) == "${LONG} and ${SHORT}"
    assert mask("abcd", {"ABCD": "abcd", "B": "{ABCD}"}) == "${ABCD}"


def test_values_shorter_than_four_characters_are_left_in_ordinary_text():
    assert mask("run 1 of abc", {"ONE": "1", "ABC": "abc"}) == "run 1 of abc"


def test_text_without_secrets_is_left_as_it_is():
    assert mask("answered 500", {"TOKEN": TOKEN}) == "answered 500"
    assert mask(f"it is {TOKEN}", {}) == f"it is {TOKEN}"


def test_an_events_text_fields_are_masked_and_the_fields_it_keeps_are_not():
    fields = {"reason": f"POST /{TOKEN}: answered 500", "tail": [f"echo {TOKEN}", "done"],
              "release": f"/srv/{TOKEN}", "seconds": 1.5, "steps": {"build": 2.0}}
    assert mask_fields(fields, {"T": TOKEN}, keep=("release",)) == {
        "reason": "POST /${T}: answered 500", "tail": ["echo ${T}", "done"],
        "release": f"/srv/{TOKEN}", "seconds": 1.5, "steps": {"build": 2.0}}


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_a_log_record_and_its_traceback_are_masked_by_the_filter(formatter):
    masking = MaskingFilter()
    masking.secrets = {"T": TOKEN}
    try:
        raise RuntimeError(f"refused {TOKEN}")
    except RuntimeError:
        record = logging.LogRecord("sluice.worker", logging.ERROR, __file__, 1, "sent %s", (TOKEN,),
                                   exc_info=sys.exc_info())
    assert masking.filter(record)
    line = formatter.format(record)
    assert TOKEN not in line and "sent ${T}" in line and "refused ${T}" in line
    if isinstance(formatter, JsonFormatter):
        assert "refused ${T}" in json.loads(line)["exc"]


def secrets_of(tmp_path: Path, text: str, env: dict[str, str]) -> dict[str, str]:
    (tmp_path / "c.yaml").write_text(text)
    return dict(load_config(tmp_path / "c.yaml", env=env).secrets)


APP = "apps:\n  a:\n    target: ./t\n"


@pytest.mark.parametrize("keys", [
    "    activate: [{http: {url: 'http://h/r', headers: {X-Key: '${V}'}}}]\n",
    "    activate: [{command: 'notify --to ${V}'}]\n",
    "    health: {url: 'http://h/${V}/health'}\n",
    "    before_switch: 'check ${V}'\n",
    "    build: {command: auto, env: {PIP_INDEX_URL: '${V}'}}\n",
    "    source: {type: git, url: 'https://h/r.git', username: u, password: '${V}'}\n",
    "    source: {type: dropbox, app_key: k, refresh_token: '${V}'}\n",
    "    source: {type: azure-devops, url: 'https://h/r.git', header: {name: X-Hook, value: '${V}'}}\n",
])
def test_what_an_apps_steps_take_and_keys_named_as_secrets_take_are_secrets(tmp_path, keys):
    value = "v" * 16
    assert secrets_of(tmp_path, APP + keys, {"V": value}) == {"V": value}


def test_a_variable_named_as_a_secret_is_one_wherever_it_is_used(tmp_path):
    text = "redis_url: 'redis://:${REDIS_PASSWORD}@h:6379/0'\n" + APP + (
        "    source: {type: git, url: 'https://x:${GIT_TOKEN}@h/r.git', branch: '${BRANCH}'}\n")
    env = {"REDIS_PASSWORD": "p4ssw0rd", "GIT_TOKEN": "ghp-0123", "BRANCH": "release"}
    assert secrets_of(tmp_path, text, env) == {"REDIS_PASSWORD": "p4ssw0rd", "GIT_TOKEN": "ghp-0123"}


def test_short_values_and_other_keys_values_are_not_secrets(tmp_path):
    text = "data_dir: '${DATA}'\n" + APP + "    build: {command: auto, env: {DEBUG: '${ONE}'}}\n"
    assert secrets_of(tmp_path, text, {"DATA": "/srv/sluice", "ONE": "1"}) == {}


def test_secrets_are_in_no_dump_of_the_config(tmp_path):
    (tmp_path / "c.yaml").write_text(APP + "    before_switch: 'check ${V}'\n")
    config = load_config(tmp_path / "c.yaml", env={"V": TOKEN})
    assert config.secrets == {"V": TOKEN}
    assert not {"secrets", "_secrets"} & set(config.model_dump()) and "secrets" not in config.model_dump_json()


def test_a_config_error_quoting_a_secret_names_its_variable_instead(tmp_path):
    (tmp_path / "c.yaml").write_text(APP + "    health: {url: '${HEALTH_URL}'}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "c.yaml", env={"HEALTH_URL": "h/health?key=abcd1234"})
    assert "apps.a.health.url: '${HEALTH_URL}' must be an http:// or https:// URL" in str(caught.value)
