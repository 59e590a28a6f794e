"""Deployment credentials: the policy, what is stored and recorded, verification, slowing
down an address that keeps failing (turns in the real Redis, time from a FakeClock, hash
calls counted by an injected hasher); and the CLI that sets and shows them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.access.credentials import (
    SCRYPT,
    CredentialsRejected,
    Verifier,
    check_policy,
    scrypt_hash,
    set_credentials,
)
from orchestrator.access.login_throttle import HashSlots, LoginThrottle, TooManyLogins
from orchestrator.core import keys
from orchestrator.core.clock import FakeClock

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
    clock = FakeClock()
    throttle = LoginThrottle(services.redis, clock)
    waits = []
    for _ in range(6):
        waits.append(throttle.admit("10.0.0.9", "a"))
        clock.advance(waits[-1] + 0.1)                  # the answer came, then a new guess
    assert waits == [0, 0, 0, 0.5, 1, 2]
    assert throttle.admit("10.0.0.10", "a") == 0
    throttle.succeeded("10.0.0.9", "own-app")          # a success elsewhere forgives nothing
    assert throttle.admit("10.0.0.9", "a") == 4
    throttle.succeeded("10.0.0.9", "a")
    assert throttle.admit("10.0.0.9", "a") == 0


def test_guesses_sent_at_once_take_turns_and_one_beyond_them_is_refused_uncounted(workspace):
    services = workspace.configure({"a": {"target": str(workspace.target("a"))}})
    clock = FakeClock()
    throttle = LoginThrottle(services.redis, clock)
    waits = [throttle.admit("10.0.0.9", "a") for _ in range(7)]
    with pytest.raises(TooManyLogins) as refused:
        throttle.admit("10.0.0.9", "a")
    counted = throttle.failures("10.0.0.9", "a")
    clock.advance(refused.value.retry_after)

    # one turn per 8 s from then on, however many are sent at once
    assert waits == [0, 0, 0, 0.5, 1.5, 3.5, 7.5] and refused.value.retry_after == 8
    assert counted == 7 and throttle.admit("10.0.0.9", "a") == 8


def test_an_attempt_counts_as_a_failure_before_its_hash_runs(workspace):
    services = workspace.configure({"a": {"target": str(workspace.target("a"))}})
    set_credentials(services, "a", "deploy", GOOD)
    seen = []

    def hasher(password, salt, params):
        seen.append(verifier.throttle.failures("10.0.0.9", "a"))
        return scrypt_hash(password, salt, params)
    verifier = Verifier(services, hasher=hasher)
    for _ in range(2):
        verifier.throttle.admit("10.0.0.9", "a")
        verifier.login("10.0.0.9", "a", "deploy", "wrong-pass1")
    verifier.throttle.admit("10.0.0.9", "a")            # and then hangs up
    counted = verifier.throttle.failures("10.0.0.9", "a")
    verifier.throttle.admit("10.0.0.9", "a")
    assert verifier.login("10.0.0.9", "a", "deploy", GOOD)

    assert seen == [1, 2, 4] and counted == 3
    assert verifier.throttle.failures("10.0.0.9", "a") == 0


def test_an_unknown_app_or_user_costs_the_same_hash_as_a_known_one(workspace):
    services = workspace.configure({"a": {"target": str(workspace.target("a"))},
                                    "b": {"target": str(workspace.target("b"))}})
    set_credentials(services, "a", "deploy", GOOD)
    set_credentials(services, "gone", "deploy", GOOD)  # credentials of an app no longer configured
    hashed = []
    verifier = Verifier(services, hasher=lambda password, salt, params: (
        hashed.append((password, len(salt), params)) or scrypt_hash(password, salt, params)))
    attempts = [("a", "deploy", GOOD + "x"), ("a", "mallory", GOOD), ("b", "deploy", GOOD),
                ("nosuch", "deploy", GOOD), ("gone", "deploy", GOOD)]

    answers = [verifier.login("10.0.0.9", *attempt) for attempt in attempts]

    assert answers == [False] * 5
    assert [params for _, _, params in hashed] == [SCRYPT] * 5
    assert {length for _, length, _ in hashed} == {16}


def test_hashes_in_flight_are_bounded_per_address_and_in_all(workspace):
    services = workspace.configure({"a": {"target": str(workspace.target("a"))}})
    started, release = threading.Semaphore(0), threading.Event()

    def slow_hasher(password, salt, params):
        started.release()
        release.wait(10)
        return b"\0" * 32
    verifier = Verifier(services, hasher=slow_hasher,
                        throttle=LoginThrottle(services.redis, services.clock, HashSlots(2, 3)))
    attempt = lambda address: verifier.login(address, "a", "deploy", GOOD)  # noqa: E731
    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(attempt, address) for address in ("10.0.0.1", "10.0.0.1", "10.0.0.2")]
        for _ in running:
            assert started.acquire(timeout=10)
        refused = []
        for address in ("10.0.0.1", "10.0.0.3"):        # the address's 3rd; the 4th in all
            with pytest.raises(TooManyLogins) as busy:
                attempt(address)
            refused.append(busy.value.retry_after)
        release.set()
        answers = [future.result(10) for future in running]

    assert refused == [1, 1] and answers == [False] * 3
    assert not attempt("10.0.0.3")                      # slots free again: checked, and wrong


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
