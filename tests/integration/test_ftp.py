"""FTP/FTPS access to apps' files: the real ftplib clients against `serve_ftp` in a thread, on
free loopback ports, with apps deployed through the real worker."""
from __future__ import annotations

import ftplib
import io
import logging
import os
import random
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.access import ftp as ftp_server
from orchestrator.access.credentials import SCRYPT, Verifier, scrypt_hash, set_credentials
from orchestrator.access.ftp import build_server, serve_ftp
from orchestrator.access.login_throttle import LoginThrottle
from orchestrator.runtime.services import Services
from tests.helpers import FUNCTION_APP, git_app, wait_for, write_files
from tests.integration.flow import sync_and_wait, tree
from tests.servers.tls import authority

PASSWORD = "s3cret-Password"
FILES = {**FUNCTION_APP, "static/site.css": "body {}"}
DENIED = "530 Login incorrect."
CONTINUOUS = "550 hello is read-only because continuous deployment is enabled."


@dataclass
class Site:
    """'hello' deployed from Git; 'other' a manual app (another tenant) whose files hold a
    symlink out of them; 'fresh' a manual app with nothing live yet."""
    workspace: object
    apps: dict
    release: Path
    other_files: Path

    @contextmanager
    def ftp(self, verifier=None, **settings):
        """The FTP server on free loopback ports with these ftp settings, serving in a thread;
        logins checked by verifier(services) if given."""
        port = _free_port()
        services = self.workspace.configure(self.apps, ftp={
            "listen": f"127.0.0.1:{port}", "passive_ports": _free_range(), **settings})
        stop = threading.Event()
        listening = build_server(services, verifier(services) if verifier else None)
        thread = threading.Thread(target=serve_ftp, args=(services, stop, listening), daemon=True)
        thread.start()
        try:
            yield Server(services, port)
        finally:
            stop.set()
            thread.join(10)


@dataclass
class Server:
    services: Services
    port: int

    def connect(self, tls: bool = False, source: str = "127.0.0.1") -> ftplib.FTP:
        client = ftplib.FTP_TLS(context=authority().client_context()) if tls else ftplib.FTP()
        client.connect("127.0.0.1", self.port, timeout=10, source_address=(source, 0))
        return client

    def login(self, user: str = "hello\\deploy", password: str = PASSWORD, tls: bool = False):
        client = self.connect(tls)
        client.login(user, password)
        return client


@pytest.fixture
def site(workspace) -> Site:
    repo = workspace.repo()
    repo.commit(FILES)
    other_files = workspace.data_dir / "releases" / "other" / "by-hand"
    write_files(other_files, {"secret.txt": "other's secret", "static/a.txt": "a"})
    os.symlink("static", other_files / "inside")
    os.symlink(workspace.target("hello"), other_files / "escape")
    other_target = workspace.target("other")
    other_target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(other_files, other_target)
    apps = {"hello": git_app(repo, workspace.target("hello")),
            "other": {"target": str(other_target)},
            "fresh": {"target": str(workspace.target("fresh"))}}
    services = workspace.configure(apps)
    release = Path(sync_and_wait(services, "hello").release)
    for app, user in (("hello", "deploy"), ("other", "owner"), ("fresh", "deploy")):
        set_credentials(services, app, user, PASSWORD)
    return Site(workspace, apps, release, other_files)


def test_a_user_named_app_backslash_user_lists_the_live_release_and_downloads_its_files(
        site, caplog):
    caplog.set_level(logging.DEBUG)
    with site.ftp(public_host="127.0.0.2") as server:
        client = server.login("hello\\deploy")
        passive_host, passive_port = ftplib.parse227(client.sendcmd("PASV"))
        listed = sorted(client.nlst()) + sorted(client.nlst("HttpHello"))
        facts = dict(client.mlsd("static"))
        got = io.BytesIO()
        client.retrbinary("RETR HttpHello/__init__.py", got.write)
        client.quit()
        slash = server.login("hello/deploy")
        slash.cwd("static")
        slash.voidcmd("TYPE I")
        size = slash.size("site.css")
        slash.quit()

    assert passive_host == "127.0.0.2"          # what clients behind NAT are told
    assert passive_port in server.services.config.ftp.passive_range
    assert listed == ["HttpHello", "host.json", "static", "__init__.py", "function.json"]
    assert facts["site.css"]["type"] == "file" and size == len("body {}")
    assert got.getvalue().decode() == FILES["HttpHello/__init__.py"]
    assert "deploy logged in to hello" in caplog.text and PASSWORD not in caplog.text


WRITES = {
    "STOR": lambda c: c.storbinary("STOR new.txt", io.BytesIO(b"new")),
    "APPE": lambda c: c.storbinary("APPE host.json", io.BytesIO(b"more")),
    "STOU": lambda c: c.sendcmd("STOU"),
    "DELE": lambda c: c.delete("host.json"),
    "RNFR": lambda c: c.rename("host.json", "moved.json"),
    "RNTO": lambda c: c.sendcmd("RNTO moved.json"),
    "MKD": lambda c: c.mkd("uploads"),
    "RMD": lambda c: c.rmd("static"),
    "SITE CHMOD": lambda c: c.sendcmd("SITE CHMOD 777 host.json"),
    "MFMT": lambda c: c.sendcmd("MFMT 20200101000000 host.json"),
}


def test_every_write_is_refused_naming_continuous_deployment_and_the_release_is_unchanged(site):
    before = {p: p.stat().st_mtime_ns for p in site.release.rglob("*")}
    answers = {}
    with site.ftp() as server:
        client = server.login()
        for command, attempt in WRITES.items():
            with pytest.raises(ftplib.error_perm) as refused:
                attempt(client)
            answers[command] = str(refused.value)
        client.quit()

    assert answers == {command: CONTINUOUS for command in WRITES}
    assert tree(site.release) == FILES
    assert {p: p.stat().st_mtime_ns for p in site.release.rglob("*")} == before


def test_an_app_off_continuous_deployment_is_read_only_too_and_says_how_to_deploy(site):
    with site.ftp() as server:
        client = server.login("other\\owner")
        with pytest.raises(ftplib.error_perm) as refused:
            client.storbinary("STOR secret.txt", io.BytesIO(b"overwritten"))
        client.quit()

    assert str(refused.value) == ("550 other is read-only over FTP; "
                                  "deploy files with 'sluice import'.")
    assert (site.other_files / "secret.txt").read_text() == "other's secret"


def test_any_wrong_part_of_a_login_gets_the_same_530(site):
    wrong = [("hello\\deploy", PASSWORD + "x"), ("hello\\someone", PASSWORD),
             ("nosuch\\deploy", PASSWORD), ("other\\deploy", PASSWORD), ("deploy", PASSWORD),
             ("hello\\deploy", "")]
    answers = []
    with site.ftp() as server:
        for n, (user, password) in enumerate(wrong):
            # Each from its own loopback address, which has no failures behind it to slow it.
            client = server.connect(source=f"127.0.0.{10 + n}")
            with pytest.raises(ftplib.error_perm) as refused:
                client.login(user, password)
            answers.append(str(refused.value))
            client.close()

    assert answers == [DENIED] * len(wrong)


def test_another_apps_files_cannot_be_reached_by_any_path(site):
    other_real = str(site.other_files)
    with site.ftp() as server:
        client = server.login()
        refused = []
        for attempt in (lambda: client.cwd("../other"), lambda: client.cwd("/../../other"),
                        lambda: client.cwd(other_real),
                        lambda: client.retrbinary("RETR ../../other/by-hand/secret.txt", print),
                        lambda: client.retrbinary(f"RETR {other_real}/secret.txt", print),
                        lambda: client.size("/../../../other/by-hand/secret.txt")):
            with pytest.raises(ftplib.error_perm) as error:
                attempt()
            refused.append(str(error.value)[:3])
        client.cwd("..")
        root_listing = sorted(client.nlst(".."))
        client.quit()

    assert refused == ["550"] * 6
    assert root_listing == ["HttpHello", "host.json", "static"]


def test_a_symlink_leading_out_of_an_apps_files_is_refused_and_one_inside_them_works(site):
    with site.ftp() as server:
        client = server.login("other\\owner")
        with pytest.raises(ftplib.error_perm, match="^550"):
            client.cwd("escape")
        with pytest.raises(ftplib.error_perm, match="^550"):
            client.retrbinary("RETR escape/host.json", print)
        inside = client.nlst("inside")
        client.quit()

    assert inside == ["a.txt"]


def test_an_app_with_nothing_live_yet_shows_an_empty_folder(site):
    with site.ftp() as server:
        client = server.login("fresh\\deploy")
        listed = client.nlst()
        client.quit()

    assert listed == []


def test_explicit_ftps_protects_the_login_and_the_downloads(site, tmp_path):
    pem = tmp_path / "ftp.pem"
    authority().certificate.private_key_and_cert_chain_pem.write_to_path(str(pem))
    with site.ftp(certificate=str(pem), private_key=str(pem), require_tls=True) as server:
        plain = server.connect()
        with pytest.raises(ftplib.error_perm) as refused:
            plain.login("hello\\deploy", PASSWORD)
        plain.close()
        client = server.login(tls=True)
        client.prot_p()
        got = io.BytesIO()
        client.retrbinary("RETR host.json", got.write)
        client.quit()

    assert "SSL/TLS required" in str(refused.value)
    assert got.getvalue().decode() == FILES["host.json"]


def test_repeated_failures_from_one_address_are_answered_more_and_more_slowly(site):
    durations = []

    def timed_login(password: str) -> None:
        client = server.connect()
        started = time.monotonic()
        try:
            client.login("hello\\deploy", password)
        finally:
            durations.append(time.monotonic() - started)
            client.close()

    with site.ftp() as server:
        for _ in range(4):
            with pytest.raises(ftplib.error_perm):
                timed_login("wrong-password-1")
        # Held as long as a failure would be: a client cannot tell success by its speed.
        timed_login(PASSWORD)

    assert durations[0] < 0.5 <= durations[3] <= durations[4]


def test_an_unknown_app_or_login_is_refused_after_the_same_hash_as_a_known_one(site):
    hashed = []

    def hasher(password, salt, params):
        hashed.append((password, len(salt), params))
        return scrypt_hash(password, salt, params)
    with site.ftp(verifier=lambda services: Verifier(services, hasher=hasher)) as server:
        for n, user in enumerate(("hello\\deploy", "nosuch\\deploy", "deploy")):
            client = server.connect(source=f"127.0.0.{10 + n}")
            with pytest.raises(ftplib.error_perm, match=DENIED):
                client.login(user, "wrong-password-1")
            client.close()

    assert hashed == [("wrong-password-1", 16, SCRYPT)] * 3


def test_guesses_sent_at_once_beyond_their_turns_are_turned_away_saying_when_to_retry(site):
    hashed, answers = [], []

    def hasher(password, salt, params):
        hashed.append(password)
        return scrypt_hash(password, salt, params)

    def guess(_) -> str:
        client = server.connect()
        try:
            client.login("hello\\deploy", "wrong-password-1")
        except ftplib.Error as refused:
            return str(refused)
        finally:
            client.close()
        return "logged in"
    # the real turns' schedule, in tenths of its seconds
    verifier = lambda services: Verifier(services, hasher=hasher, throttle=LoginThrottle(  # noqa: E731
        services.redis, services.clock, first_delay=0.05, max_delay=0.8))
    with site.ftp(verifier=verifier) as server, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(8)))

    turned_away = [answer for answer in answers if answer.startswith("421")]
    assert answers.count(DENIED) == len(hashed) and len(hashed) + len(turned_away) == 8
    assert len(hashed) <= 7 and turned_away
    assert all(re.fullmatch(r"421 Too many login attempts; try again in [1-9]\d* s\.", answer)
               for answer in turned_away)


def test_connections_that_never_log_in_give_their_slot_back_after_the_login_timeout(
        site, monkeypatch):
    monkeypatch.setattr(ftp_server, "LOGIN_TIMEOUT", 1)
    with site.ftp(max_connections_per_ip=2) as server:
        session, stranger = server.login(), server.connect()
        with pytest.raises(ftplib.error_temp):
            server.connect()
        newcomer = wait_for(lambda: _connects(server), timeout=10, what="the stranger's slot")
        time.sleep(1.5)             # the session, logged in, idles longer than a stranger may
        listed = session.nlst()
        time.sleep(1.5)             # and after a transfer too
        session.voidcmd("NOOP")
        session.quit()
        newcomer.close()
        with pytest.raises(ftplib.error_temp, match="421 Control connection timed out"):
            stranger.voidcmd("NOOP")

    assert listed == ["HttpHello", "host.json", "static"]


@pytest.mark.parametrize("limits, answer", [
    ({"max_connections": 2}, "421 Too many connections. Service temporarily unavailable."),
    ({"max_connections_per_ip": 2}, "421 Too many connections from the same IP address.")])
def test_connections_beyond_the_configured_limits_are_turned_away(site, limits, answer):
    with site.ftp(**limits) as server:
        first, second = server.connect(), server.connect()
        with pytest.raises(ftplib.error_temp) as turned_away:
            server.connect()
        first.quit()
        third = wait_for(lambda: _connects(server), timeout=10, what="a freed slot")
        for client in (second, third):
            client.quit()

    assert str(turned_away.value) == answer


def _connects(server: Server) -> ftplib.FTP | None:
    try:
        return server.connect()
    except ftplib.error_temp:
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_range(size: int = 10) -> str:
    """Passive ports below the kernel's ephemeral range (so clients' own ports cannot take
    them), each free when picked."""
    for _ in range(20):
        low = random.randrange(20000, 30000 - size)
        if all(_bindable(port) for port in range(low, low + size)):
            return f"{low}-{low + size - 1}"
    raise AssertionError("no free passive port range found")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
