"""An app's `health:` probe and what `on_failure` becomes with it (issue 15)."""
from pathlib import Path

import pytest

from orchestrator.config.settings import load_config
from orchestrator.config.steps import HealthConfig
from orchestrator.core.errors import ConfigError

URL = "http://127.0.0.1:8081/health"


def app_with(tmp_path: Path, keys: str, env: dict | None = None):
    app = "".join(f"    {line}\n" for line in keys.splitlines())
    (tmp_path / "c.yaml").write_text("apps:\n  a:\n    target: ./t\n" + app)
    return load_config(tmp_path / "c.yaml", env=env or {}).apps["a"]


def refused(tmp_path: Path, keys: str) -> str:
    with pytest.raises(ConfigError) as caught:
        app_with(tmp_path, keys)
    return str(caught.value)


def test_a_health_url_alone_probes_with_the_defaults(tmp_path):
    health = app_with(tmp_path, f"health: {{url: '{URL}'}}").health
    assert health == HealthConfig(url=URL, expect=None, body_contains=None, headers={}, timeout=5.0,
                                  interval=1.0, healthy_after=1, deadline=60.0, stable_for=0.0)


def test_a_health_mapping_takes_statuses_a_body_headers_and_durations(tmp_path):
    health = app_with(tmp_path, (
        f"health: {{url: '{URL}?rev={{revision}}', expect: [200, 204], body_contains: '{{revision}}', "
        "headers: {Authorization: 'Bearer ${TOKEN}'}, timeout: 500ms, interval: 2s, healthy_after: 3, "
        "deadline: 2m, stable_for: 30s}"), env={"TOKEN": "t0k3n"}).health
    assert health is not None
    assert (health.url, health.expect, health.body_contains, health.headers) == (
        URL + "?rev={revision}", [200, 204], "{revision}", {"Authorization": "Bearer t0k3n"})
    assert (health.timeout, health.interval, health.healthy_after, health.deadline, health.stable_for) == (
        0.5, 2.0, 3, 120.0, 30.0)


@pytest.mark.parametrize("keys, on_failure", [
    (f"health: {{url: '{URL}'}}", "rollback"),
    (f"health: {{url: '{URL}'}}\non_failure: keep", "keep"),
    ("activate: [{command: reload}]", "keep"),
    ("on_failure: rollback", "rollback"),
    ("on_failure:", "keep"),
])
def test_on_failure_rolls_back_by_default_only_when_a_health_probe_can_say_the_release_is_broken(
        tmp_path, keys, on_failure):
    assert app_with(tmp_path, keys).on_failure == on_failure


@pytest.mark.parametrize("health, message", [
    ("{url: 'http://h/health?rev={revison}'}", "apps.a.health.url: unknown placeholder {revison} (known: {app}, "),
    ("{url: 'http://h/', body_contains: 'v{rev}'}", "apps.a.health.body_contains: unknown placeholder {rev}"),
    ("{url: 'http://h/', headers: {X-App: '{name}'}}", "apps.a.health.headers: X-App: unknown placeholder {name}"),
    ("{url: 'h/health'}", "apps.a.health.url: 'h/health' must be an http:// or https:// URL"),
    ("{timeout: 5s}", "apps.a.health.url: required key is missing"),
    ("{url: 'http://h/', healthy_after: 0}", "apps.a.health.healthy_after: Input should be greater than or equal to 1"),
    ("{url: 'http://h/', timeout: 0s}", "apps.a.health.timeout: Input should be greater than 0"),
    ("{url: 'http://h/', interval: 0}", "apps.a.health.interval: Input should be greater than 0"),
    ("{url: 'http://h/', deadline: 0}", "apps.a.health.deadline: Input should be greater than 0"),
    ("{url: 'http://h/', stable_for: soon}", "apps.a.health.stable_for: invalid duration 'soon'"),
    ("{url: 'http://h/', body_contains: ''}", "apps.a.health.body_contains: must not be empty"),
    ("{url: 'http://h/', expect: [ok]}", "apps.a.health.expect.0: Input should be a valid integer"),
    ("{url: 'http://h/', retries: 3}", "apps.a.health.retries: unknown key"),
])
def test_a_bad_health_setting_is_refused_naming_the_key(tmp_path, health, message):
    assert message in refused(tmp_path, f"health: {health}")


def test_on_failure_other_than_keep_or_rollback_is_refused(tmp_path):
    assert "apps.a.on_failure: Input should be 'keep' or 'rollback'" in refused(tmp_path, "on_failure: retry")
