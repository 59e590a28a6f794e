"""Deployment credentials: the policy, what is stored and recorded, verification, slowing
down an address that keeps failing; and the CLI that sets and shows them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orchestrator.access.credentials import (
    CredentialsRejected,
    Verifier,
    check_policy,
    set_credentials,
)
from orchestrator.core import keys

GOOD = "s3cret-Password"


@pytest.mark.parametrize("user, password, why", [
    ("deploy@example.com", GOOD, "no '@'"),
    ("app\\deploy", GOOD, "no '@', ':' or"),
    ("deploy", "short1!", "at least 8 characters"),
    ("deploy", "onlyletters", "two of: letters, digits, symbols"),
    ("deploy", "1234567890", "two of: letters, digits, symbols")])
def test_credentials_outside_the_policy_are_refused_saying_why(user, password, why):
    with pytest.raises(CredentialsRejected, match=why):
        check_policy(user, password)


def test_only_a_salted_hash_is_stored_and_the_event_names_the_user_not_the_secret(workspace):
    services = workspace.configure({"hello": {"target": str(workspace.target("hello"))}})
    set_credentials(services, "hello", "deploy", GOOD)
    stored = services.redis.get(keys.credentials("hello")).decode()
    recorded = json.dumps([r.event.to_fields() for r in services.store.read("hello")])
    assert GOOD not in stored and json.loads(stored)["user"] == "deploy"
    assert "CredentialsChanged" in recorded and "deploy" in recorded and GOOD not in recorded


def test_the_verifier_accepts_only_the_right_user_and_password_for_that_app(workspace):
    services = workspace.configure({"a": {"target": str(workspace.target("a"))},
                                    "b": {"target": str(workspace.target("b"))}})
    set_credentials(services, "a", "deploy", GOOD)
    verifier = Verifier(services)
    assert verifier.check("a", "deploy", GOOD) and verifier.check("a", "deploy", GOOD)
    assert not verifier.check("a", "deploy", GOOD + "x")
    assert not verifier.check("a", "other", GOOD)
    assert not verifier.check("b", "deploy", GOOD)          # b has no credentials at all


def test_an_address_that_keeps_failing_at_an_app_is_slowed_down_until_it_succeeds_there(workspace):
    services = workspace.configure({"a": {"target": str(workspace.target("a"))}})
    verifier = Verifier(services)
    delays = []
    for _ in range(6):
        delays.append(verifier.delay_for("10.0.0.9", "a"))
        verifier.failed("10.0.0.9", "a")
    assert delays[:3] == [0, 0, 0] and delays[3] < delays[4] < delays[5]
    assert verifier.delay_for("10.0.0.10", "a") == 0
    verifier.succeeded("10.0.0.9", "own-app")         # a success elsewhere forgives nothing
    assert verifier.delay_for("10.0.0.9", "a") == delays[5] * 2
    verifier.succeeded("10.0.0.9", "a")
    assert verifier.delay_for("10.0.0.9", "a") == 0


def test_the_cli_reads_the_password_from_stdin_and_shows_the_ways_in(workspace):
    services = workspace.configure({"hello": {"target": str(workspace.target("hello"))}},
                                   api={"listen": "127.0.0.1:8089"},
                                   ftp={"listen": "127.0.0.1:2121", "public_host": "ftp.example"})
    run = lambda *a, stdin=None: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "orchestrator.cli", "--config", str(workspace.config_path), *a],
        input=stdin, capture_output=True, text=True, env={**os.environ, "SLUICE_REDIS_URL": workspace.redis_url})
    weak = run("credentials", "set", "hello", "deploy", stdin="weak\n")
    ok = run("credentials", "set", "hello", "deploy", stdin=GOOD + "\n")
    shown = run("credentials", "show", "hello")
    assert weak.returncode == 1 and "at least 8 characters" in weak.stderr
    assert ok.returncode == 0 and GOOD not in ok.stdout + ok.stderr
    assert Verifier(services).check("hello", "deploy", GOOD)
    assert "http://deploy@127.0.0.1:8089/git/hello.git" in shown.stdout
    assert "ftp://ftp.example:2121  user hello\\deploy" in shown.stdout
