"""An app's `activate` actions as the config loader checks them (issue 15): an `http`
action's URL and headers are checked as the health probe's are."""
from pathlib import Path

import pytest

from orchestrator.config.settings import load_config
from orchestrator.config.steps import HttpAction
from orchestrator.core.errors import ConfigError


def load(tmp_path: Path, action: str):
    (tmp_path / "c.yaml").write_text(f"apps:\n  a:\n    target: ./t\n    activate:\n      - {action}\n")
    return load_config(tmp_path / "c.yaml", env={"TOKEN": "t0k3n-abc"}).apps["a"]


def test_an_http_action_takes_the_known_placeholders_and_secrets_from_the_environment(tmp_path):
    action = load(tmp_path, "http: {url: 'https://h/deployed?rev={revision}', "
                            "headers: {Authorization: 'Bearer ${TOKEN}', X-Release: '{release}'}}").activate[0]
    assert isinstance(action, HttpAction)
    assert (action.http.url, action.http.headers) == (
        "https://h/deployed?rev={revision}", {"Authorization": "Bearer t0k3n-abc", "X-Release": "{release}"})


@pytest.mark.parametrize("action, message", [
    ("http: {url: 'http://h/reload?rev={revison}'}",
     "apps.a.activate.0.http.url: unknown placeholder {revison} (known: {app}, {deployment}, "),
    ("http: {url: 'http://h/', headers: {X-Release: '{relase}'}}",
     "apps.a.activate.0.http.headers: X-Release: unknown placeholder {relase}"),
    ("http: {url: 'h/reload'}", "apps.a.activate.0.http.url: 'h/reload' must be an http:// or https:// URL"),
    ("signal: {pidfile: /run/h.pid, signal: HANG}", "apps.a.activate.0.signal.signal: 'HANG' is not a signal name"),
])
def test_a_bad_activate_action_is_refused_at_load_naming_the_key(tmp_path, action, message):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, action)
    assert message in str(caught.value)
