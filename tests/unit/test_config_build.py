"""The `build:` key of an app and `worker.build_concurrency` (issue 14)."""
import re
from pathlib import Path

import pytest

from orchestrator.config.settings import load_config
from orchestrator.config.steps import BuildConfig
from orchestrator.core.errors import ConfigError


def app_with(tmp_path: Path, build: str | None, env: dict | None = None):
    text = "apps:\n  a:\n    target: ./t\n" + (f"    build: {build}\n" if build is not None else "")
    (tmp_path / "c.yaml").write_text(text)
    return load_config(tmp_path / "c.yaml", env=env or {}).apps["a"]


def refused(tmp_path: Path, build: str) -> str:
    with pytest.raises(ConfigError) as caught:
        app_with(tmp_path, build)
    return str(caught.value)


def test_an_app_without_build_detects_its_build_with_the_defaults(tmp_path):
    build = app_with(tmp_path, None).build
    assert build == BuildConfig(command="auto", timeout=900.0, idle_timeout=300.0, env={},
                                python="python3", sandbox="auto")


@pytest.mark.parametrize("written, command", [("auto", "auto"), ("none", "none")])
def test_build_auto_and_none_are_a_build_config_with_only_the_command_set(tmp_path, written, command):
    assert app_with(tmp_path, written).build == BuildConfig(command=command)


def test_a_build_mapping_without_a_command_detects_the_build_with_its_environment(tmp_path):
    build = app_with(tmp_path, "{env: {PIP_NO_INDEX: '1', PIP_FIND_LINKS: '${WHEELS}'}}",
                     env={"WHEELS": "/srv/wheels"}).build
    assert build.command == "auto"
    assert build.env == {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/srv/wheels"}


def test_a_build_mapping_takes_a_command_durations_an_interpreter_and_a_sandbox_mode(tmp_path):
    build = app_with(tmp_path, "{command: 'make dist', timeout: 15m, idle_timeout: 30s, "
                               "python: python3.11, sandbox: 'on'}").build
    assert (build.command, build.timeout, build.idle_timeout, build.python, build.sandbox) == (
        "make dist", 900.0, 30.0, "python3.11", "on")


@pytest.mark.parametrize("build, message", [
    ("make", "apps.a.build: must be auto, none, or a mapping of command, timeout"),
    ("{commands: make}", "apps.a.build.commands: unknown key"),
    ("{command: ''}", "apps.a.build.command: must not be empty"),
    ("{python: ' '}", "apps.a.build.python: must not be empty"),
    ("{timeout: soon}", "apps.a.build.timeout: invalid duration 'soon'"),
    ("{timeout: 0s}", "apps.a.build.timeout: Input should be greater than 0"),
    ("{idle_timeout: 0}", "apps.a.build.idle_timeout: Input should be greater than 0"),
    ("{sandbox: maybe}", "apps.a.build.sandbox: Input should be 'auto', 'on' or 'off'"),
    ("{env: {1PATH: x}}", "apps.a.build.env: '1PATH' is not an environment variable name"),
    ("{env: {PIP_NO_INDEX: 1}}", 'apps.a.build.env: PIP_NO_INDEX: the value must be a string: quote it'),
])
def test_a_bad_build_setting_is_refused_naming_the_key(tmp_path, build, message):
    assert message in refused(tmp_path, build)


def test_an_unset_variable_in_the_build_environment_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("apps.a.build.env.TOKEN: environment variable NOPE is not set")):
        app_with(tmp_path, "{env: {TOKEN: '${NOPE}'}}")


def test_a_worker_builds_one_app_at_a_time_unless_told_otherwise(tmp_path):
    (tmp_path / "c.yaml").write_text("")
    assert load_config(tmp_path / "c.yaml", env={}).worker.build_concurrency == 1
    (tmp_path / "c.yaml").write_text("worker: {build_concurrency: 3}\n")
    assert load_config(tmp_path / "c.yaml", env={}).worker.build_concurrency == 3


@pytest.mark.parametrize("worker, message", [
    ("{build_concurrency: 0}", "worker.build_concurrency: Input should be greater than or equal to 1"),
    ("{concurrency: 2}", "worker.concurrency: unknown key")])
def test_a_bad_worker_setting_is_refused_naming_the_key(tmp_path, worker, message):
    (tmp_path / "c.yaml").write_text(f"worker: {worker}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(tmp_path / "c.yaml", env={})
