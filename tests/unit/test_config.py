import contextlib
import re
from pathlib import Path

import pytest

from orchestrator.config.settings import load_config
from orchestrator.config.sources import parse_duration
from orchestrator.core.errors import ConfigError


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("500ms", 0.5),
                                          ("2d", 172800), (45, 45), ("1.5s", 1.5), ("10", 10)])
def test_durations_accept_units_and_plain_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1s", "5 minutes", "", True, None])
def test_bad_durations_are_refused_with_an_example(text):
    with pytest.raises(ValueError, match="use e.g. 500ms, 30s"):
        parse_duration(text)


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "c.yaml").write_text(text)
    return tmp_path / "c.yaml"


def test_relative_paths_and_local_urls_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, "data_dir: ./var\napps:\n  a:\n    target: ./t\n"
                                         "    source: {type: git, url: ./repo}\n"), env={})
    assert config.data_dir == tmp_path / "var"
    assert config.apps["a"].target == tmp_path / "t"
    assert config.apps["a"].source.url == str(tmp_path / "repo")


def test_remote_urls_are_kept_as_written(tmp_path):
    for url in ("https://example.invalid/r.git", "git@example.invalid:org/r.git",
                "ssh://git@example.invalid/r.git"):
        config = load_config(write(tmp_path, f"apps:\n  a:\n    target: ./t\n"
                                             f"    source: {{type: git, url: '{url}'}}\n"), env={})
        assert config.apps["a"].source.url == url


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    config = load_config(write(tmp_path, "apps:\n  a:\n    target: ./t\n"
                                         "    source: {type: git, url: ./r}\n"), env={})
    app = config.apps["a"]
    assert (app.layout, app.source.branch, app.source.path, app.source.poll_interval) == (
        "functions", "master", "", 30.0)
    assert (app.retry.attempts, app.retry.base, app.retry.max) == (5, 2.0, 60.0)
    assert config.redis_url is None


def test_environment_variables_are_expanded_inside_strings(tmp_path):
    config = load_config(write(tmp_path, "redis_url: redis://${HOST}:${PORT}/0\n"),
                         env={"HOST": "127.0.0.1", "PORT": "6400"})
    assert config.redis_url == "redis://127.0.0.1:6400/0"


def test_sluice_environment_overrides_the_file(tmp_path):
    config = load_config(write(tmp_path, "redis_url: redis://a/0\n"),
                         env={"SLUICE_REDIS_URL": "redis://b/1", "SLUICE_DATA_DIR": str(tmp_path),
                              "SLUICE_API_LISTEN": "0.0.0.0:9000"})
    assert (config.redis_url, config.data_dir) == ("redis://b/1", tmp_path)
    assert (config.api.host, config.api.port) == ("0.0.0.0", 9000)


def test_a_subfolder_path_may_not_climb_out_of_the_repository(tmp_path):
    with pytest.raises(ConfigError, match=r"apps.a.source.path: path '../x' must be a plain folder path"):
        load_config(write(tmp_path, "apps:\n  a:\n    target: ./t\n"
                                    "    source: {type: git, url: ./r, path: ../x}\n"), env={})


def test_several_problems_are_reported_together(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "apps:\n  a:\n    target: ./t\n    colour: red\n"
                                    "    source: {type: git, url: ./r, poll_interval: x}\n"), env={})
    assert "apps.a.colour: unknown key" in str(caught.value)
    assert "apps.a.source.poll_interval: invalid duration" in str(caught.value)


def test_a_missing_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read config"):
        load_config(tmp_path / "nope.yaml", env={})


@pytest.mark.parametrize("source, message", [
    ("{type: dropbox, path: /site}", "dropbox sources need app_key and refresh_token"),
    ("{type: onedrive, client_id: c, client_secret: s}", "with client_secret (app-only) need drive_id"),
    ("{type: onedrive, client_id: c}", "onedrive sources need client_secret and drive_id"),
    ("{type: dropbox, path: a/../b, access_token: t}", "must be a plain folder path")])
def test_cloud_folder_sources_say_which_credentials_or_path_are_wrong(tmp_path, source, message):
    with pytest.raises(ConfigError, match=r"apps\.a\.source.*" + re.escape(message)):
        load_config(write(tmp_path, f"apps:\n  a:\n    target: ./t\n    source: {source}\n"), env={})


@pytest.mark.parametrize("settings, key", [
    ("api: {token: \"${TOKEN}\"}\n", "api.token"),
    ("api: {worker_token: \"${TOKEN}\"}\n", "api.worker_token"),
    ("apps:\n  a:\n    target: ./t\n    source: {type: github, url: ./r, secret: \"${TOKEN}\"}\n",
     "apps.a.source.secret"),
    ("apps:\n  a:\n    target: ./t\n    source: {type: azure-devops, url: ./r,"
     " header: {name: X-Hook, value: \"${TOKEN}\"}}\n", "apps.a.source.header.value")])
@pytest.mark.parametrize("value, message", [("", "must not be empty"), ("   ", "must not be empty"),
                                            ("hunter2", "too short for a secret")])
def test_an_empty_or_short_token_or_secret_is_refused_naming_the_key(tmp_path, settings, key, value, message):
    with pytest.raises(ConfigError, match=re.escape(f"{key}: {message}")) as caught:
        load_config(write(tmp_path, settings), env={"TOKEN": value})
    assert "hunter2" not in str(caught.value)


def test_a_token_of_sixteen_characters_or_more_is_accepted(tmp_path):
    config = load_config(write(tmp_path, "api: {token: \"${TOKEN}\"}\n"), env={"TOKEN": "0123456789abcdef"})
    assert config.api.token == "0123456789abcdef"


def test_a_worker_token_from_the_environment_is_a_secret_apart_from_the_operators_token(tmp_path):
    config = load_config(write(tmp_path, "api: {worker_token: \"${WORKER}\"}\n"),
                         env={"WORKER": "worker-0123456789"})

    assert config.api.worker_token == "worker-0123456789" and config.api.token is None
    assert config.secrets == {"WORKER": "worker-0123456789"}


def test_a_worker_token_equal_to_the_operators_token_is_refused_without_showing_it(tmp_path):
    settings = "api: {token: \"${TOKEN}\", worker_token: \"${TOKEN}\"}\n"

    with pytest.raises(ConfigError, match=r"api: worker_token must differ from token") as caught:
        load_config(write(tmp_path, settings), env={"TOKEN": "same-0123456789ab"})
    assert "same-0123456789ab" not in str(caught.value)


@pytest.mark.parametrize("api, reads", [
    ("{}", "loopback"), ("{listen: '[::1]:8080'}", "loopback"), ("{listen: 'localhost:8080'}", "loopback"),
    ("{listen: '0.0.0.0:8080'}", "token"), ("{listen: '192.0.2.7:8080'}", "token"),
    ("{behind_proxy: true}", "token"), ("{listen: '0.0.0.0:8080', reads: open}", "open")])
def test_reads_need_the_token_unless_set_where_other_hosts_or_a_proxy_can_reach_the_api(tmp_path, api, reads):
    assert load_config(write(tmp_path, f"api: {api}\n"), env={}).api.reads == reads


def test_reads_by_loopback_behind_a_proxy_are_refused_naming_both_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"api: reads: loopback cannot hold with behind_proxy: true"):
        load_config(write(tmp_path, "api: {behind_proxy: true, reads: loopback}\n"), env={})


def test_the_api_answers_to_loopback_its_listen_address_and_the_hosts_listed(tmp_path):
    config = load_config(write(tmp_path, "api: {listen: '192.0.2.7:80', hosts: [Sluice.Example.COM., '[::1]']}\n"),
                         env={})
    every = load_config(write(tmp_path, "api: {listen: '0.0.0.0:80'}\n"), env={})

    assert config.api.host_names == {"localhost", "127.0.0.1", "::1", "192.0.2.7", "sluice.example.com"}
    assert every.api.host_names == {"localhost", "127.0.0.1", "::1"}


@pytest.mark.parametrize("host", ["sluice.example.com:443", "https://sluice.example.com", "two words", ""])
def test_a_host_with_a_port_or_a_scheme_is_refused_naming_api_hosts(tmp_path, host):
    with pytest.raises(ConfigError, match=r"api.hosts: host .* must be a name as clients write it, without "
                                          r"scheme or port"):
        load_config(write(tmp_path, f"api: {{hosts: ['{host}']}}\n"), env={})


@pytest.mark.parametrize("text", ["apps: {a: {target: /srv/a}}\n", "apps: {a: {colour: red}}\n"])
def test_loading_leaves_the_garbage_collector_as_it_found_it_read_or_refused(tmp_path, text):
    import gc
    for running in (True, False):
        (gc.enable if running else gc.disable)()
        with contextlib.suppress(ConfigError):
            load_config(write(tmp_path, text), env={})
        after = gc.isenabled()
        gc.enable()
        assert after is running
