"""Logging: text or one JSON object per line, secrets masked either way, and the choice
handed to child processes through the environment."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.observe import logging_setup
from orchestrator.observe.logging_setup import JsonFormatter, TextFormatter, configure, redact


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch):
    """Each test's handlers and environment are undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.delenv(logging_setup.FORMAT_ENV, raising=False)
    monkeypatch.delenv(logging_setup.LEVEL_ENV, raising=False)
    monkeypatch.delenv("SLUICE_CONFIG", raising=False)     # the CLI sets it for its children
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(message: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    logger = logging.getLogger("sluice.test")
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, args, exc_info,
                             extra=extra)


def test_a_json_line_carries_time_level_logger_message_and_the_extra_fields():
    line = JsonFormatter().format(record("%s: deployment %s live", "hello", "d1",
                                         app="hello", deployment="d1"))

    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == "sluice.test"
    assert doc["message"] == "hello: deployment d1 live"
    assert (doc["app"], doc["deployment"]) == ("hello", "d1")
    assert doc["ts"].endswith("Z") and "T" in doc["ts"]


def test_a_traceback_stays_inside_its_one_json_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        line = JsonFormatter().format(record("crashed", exc_info=sys.exc_info()))

    assert "\n" not in line
    assert "RuntimeError: boom" in json.loads(line)["exc"]


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_credentials_in_urls_and_authorization_values_never_reach_a_line(formatter):
    line = formatter.format(record(
        "fetch of https://alice:s3cret@git.example.com/r.git failed; sent Authorization: Basic YWxpY2U6czNjcmV0",
        url="ssh://deploy:hunter2@host/repo"))

    assert "s3cret" not in line and "hunter2" not in line and "YWxpY2U6czNjcmV0" not in line
    assert "https://***@git.example.com/r.git" in line


def test_secret_parameters_are_masked_but_their_names_kept():
    line = redact("GET /oauth2/token?client_secret=abc123&grant_type=x failed: access_token=eyJhb.c")

    assert "abc123" not in line and "eyJhb" not in line
    assert "client_secret=***&grant_type=x" in line and "access_token=***" in line


def test_access_log_query_values_named_like_tokens_are_masked_whatever_their_prefix():
    line = redact('127.0.0.1:5 - "GET /api/events?api_token=t0k&app=x&authorization=Bearer%20abc'
                  '&apikey=k1&max_tokens=5 HTTP/1.1" 200')

    assert "t0k" not in line and "Bearer%20abc" not in line and "k1" not in line
    assert "api_token=***&app=x&authorization=***&apikey=***&max_tokens=5" in line


def test_extra_fields_named_like_secrets_are_masked_and_others_kept():
    doc = json.loads(JsonFormatter().format(record(
        "x", password="p4ss", api_token="t0k", client_secret="s", passive_ports="60000-60099")))

    assert doc["password"] == doc["api_token"] == doc["client_secret"] == "***"
    assert doc["passive_ports"] == "60000-60099"


def test_text_without_credentials_is_left_as_it_is():
    text = "see https://example.com/a@b and mail ops@example.com"

    assert redact(text) == text


def test_configuring_again_replaces_the_handler_instead_of_adding_one():
    configure("text")
    configure("json", "debug")

    ours = [h for h in logging.getLogger().handlers if isinstance(h, logging_setup._StderrHandler)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
    assert logging.getLogger().level == logging.DEBUG


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="text, json"):
        configure("xml")


def test_the_cli_option_is_handed_to_child_processes_in_the_environment(tmp_path):
    config = tmp_path / "sluice.yaml"
    config.write_text(f"data_dir: {tmp_path}\napps: {{}}\n")

    result = CliRunner().invoke(cli, ["--config", str(config), "--log-format", "json",
                                      "check-config"])

    assert result.exit_code == 0, result.output
    assert os.environ[logging_setup.FORMAT_ENV] == "json"


def test_the_cli_refuses_an_unknown_log_format(tmp_path):
    result = CliRunner().invoke(cli, ["--log-format", "xml", "check-config"])

    assert result.exit_code == 2 and "--log-format" in result.output


def test_a_child_process_started_with_the_environment_logs_json_lines():
    code = ("import logging; from orchestrator.observe.logging_setup import configure; configure(); "
            "logging.getLogger('sluice.poller').info('polling %d app(s)', 2, extra={'app': 'hello'})")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**os.environ, logging_setup.FORMAT_ENV: "json"})

    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1, child.stderr
    doc = json.loads(lines[0])
    assert (doc["logger"], doc["message"], doc["app"]) == ("sluice.poller", "polling 2 app(s)", "hello")
