"""Who may log in over FTP, and where they land.

The user name is `APP\\USER` (as Azure App Service shows it) or `APP/USER`; the password is
the app's deployment password (`sluice credentials set`). A session's home is the release the
app's target points to at login, or an empty read-only folder while nothing is live.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pyftpdlib.authorizers import AuthenticationFailed

from orchestrator.access.credentials import Verifier
from orchestrator.releases.readable_release import readable_target
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.ftp")

# One answer for every refused login, so that it tells nothing about which part was wrong.
DENIED = "Login incorrect."
# pyftpdlib's permission letters for: enter a folder, list, retrieve. Writes are refused before
# they reach the authorizer (with a message saying why); this is the second lock.
READ_ONLY = "elr"
_LOGIN = re.compile(r"^([^\\/]+)[\\/]([^\\/]+)$")


@dataclass(frozen=True)
class Login:
    app: str
    user: str


def parse_login(name: str) -> Login | None:
    """'APP\\USER' or 'APP/USER' -> Login; anything else -> None."""
    match = _LOGIN.match(name)
    return Login(*match.groups()) if match else None


def logged_in_app(name: str) -> str:
    """The app of a user name that validate_authentication accepted (so it parses)."""
    login = parse_login(name)
    if login is None:
        raise AuthenticationFailed(DENIED)
    return login.app


def empty_home(data_dir: Path) -> str:
    """The folder a session sees while its app has nothing live."""
    path = Path(data_dir) / "ftp-empty"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    return str(path)


class AppAuthorizer:
    """pyftpdlib's authorizer interface over Sluice's deployment credentials."""

    def __init__(self, services: Services, verifier: Verifier | None = None):
        self.services = services
        self.verifier = verifier or Verifier(services)
        self.empty = empty_home(services.config.data_dir)

    def validate_authentication(self, username: str, password: str, handler) -> None:
        """After the attempt's turn (the session's ftp_PASS took it); may raise TooManyLogins."""
        address, login = handler.remote_ip, parse_login(username) or Login("", "")
        if not self.verifier.login(address, login.app, login.user, password):
            log.warning("refused FTP login as %r from %s", username, address)
            raise AuthenticationFailed(DENIED)
        log.info("%s logged in to %s over FTP from %s", login.user, login.app, address)

    def get_home_dir(self, username: str) -> str:
        # Resolved once per session: a deployment during the session switches the target,
        # not what this session is reading.
        release = os.path.realpath(readable_target(self.services, logged_in_app(username)))
        return release if os.path.isdir(release) else self.empty

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm in READ_ONLY

    def get_perms(self, username: str) -> str:
        return READ_ONLY

    def get_msg_login(self, username: str) -> str:
        return f"Logged in to {logged_in_app(username)} (read-only)."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    # Every app's files are served as the server's own OS user: there is no one to become.
    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass
