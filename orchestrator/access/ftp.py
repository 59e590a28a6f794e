"""FTP/FTPS access to apps' files: `sluice ftp`, and `sluice up` when ftp.listen is set.

A session logs in as `APP\\USER` (see ftp_auth.py) and sees that app's live release, read-only:
releases are immutable and their files hardlinked from the content-addressed store, so a
write would change every release sharing the file. Every write command is answered 550 with
the reason; the authorizer grants only read permissions besides.

The server runs a thread per connection (pyftpdlib's ThreadedFTPServer) rather than one event
loop: a login costs a deliberately slow scrypt hash and Redis round trips, which on a shared
loop would stall every other session. max_connections bounds the threads. A connection that
has not logged in is closed after LOGIN_TIMEOUT idle seconds, so that idle strangers cannot
keep an address (max_connections_per_ip) or everyone (max_connections) out for the 5 minutes
a logged-in session may idle. Each PASS takes its turn from the login throttle first (see
access/login_throttle.py): held until then, or answered 421 with when to retry.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from orchestrator.access.credentials import Verifier
from orchestrator.access.ftp_auth import AppAuthorizer, logged_in_app, parse_login
from orchestrator.access.login_throttle import TooManyLogins
from orchestrator.config.settings import AppConfig, FtpConfig
from orchestrator.core.errors import ConfigError
from orchestrator.runtime.services import Services

log = logging.getLogger("sluice.ftp")

IDLE_TIMEOUT = 300          # seconds a session may wait between commands (as vsftpd)
LOGIN_TIMEOUT = 30          # the same before logging in: idle strangers must not hold slots
POLL_SECONDS = 0.5          # how soon serve_ftp notices `stop`
WRITE_COMMANDS = frozenset({"STOR", "STOU", "APPE", "DELE", "RNFR", "RNTO", "MKD", "XMKD",
                            "RMD", "XRMD", "SITE CHMOD", "MFMT"})


def read_only_reason(app: str, config: AppConfig) -> str:
    if config.source.type == "manual":
        return f"{app} is read-only over FTP; deploy files with 'sluice import'."
    return f"{app} is read-only because continuous deployment is enabled."


class ReleaseFS(AbstractedFS):
    """A session's view, confined to its release: validpath() compares real paths, so a
    symlink leading out of the release is refused like '..' is."""

    def chdir(self, path: str) -> None:
        # The base class calls os.chdir(), which would move every thread of the process; only
        # check that the folder can be entered.
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECTORY))
        self.cwd = self.fs2ftp(path)


if TYPE_CHECKING:               # the mixin below calls on what pyftpdlib's handlers have
    from pyftpdlib.handlers import FTPHandler as _Handler
else:
    _Handler = object


class _AppSession(_Handler):
    """What a Sluice session adds to pyftpdlib's handlers (mixed in before them)."""
    services: Services
    app: str = ""
    _idler: Any                 # pyftpdlib's idle timer, started when the connection is made

    def on_login(self, username: str) -> None:
        self.app = logged_in_app(username)
        # Until now the idle timeout was LOGIN_TIMEOUT, on the ioloop that accepted the
        # connection; from now on it is the session's, on the session's own ioloop (pyftpdlib
        # restarts it with self.timeout after each transfer).
        self.timeout = IDLE_TIMEOUT
        if self._idler is not None and not self._idler.cancelled:
            self._idler.cancel()
        self._idler = self.ioloop.call_later(IDLE_TIMEOUT, self.handle_timeout,
                                             _errback=self.handle_error)

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        # Checked before pyftpdlib's own path and permission checks, so that every write gets
        # this answer rather than a bare "Not enough privileges".
        if self.authenticated and _full_command(cmd, arg) in WRITE_COMMANDS:
            reason = read_only_reason(self.app, self.services.config.apps[self.app])
            self.respond(f"550 {reason}")
            log.info("refused %s %s in %s from %s: read-only", cmd, arg, self.app, self.remote_ip)
            return
        super().pre_process_command(line, cmd, arg)

    def ftp_PASS(self, line: str) -> None:
        if self.authenticated or not self.username:     # answered 503: no attempt to count
            super().ftp_PASS(line)
            return
        # Every answer to an address that keeps failing is held, successes too: were only
        # failures slow, a client could give up on any attempt not answered at once.
        login = parse_login(self.username)
        try:
            hold = self.authorizer.verifier.throttle.admit(self.remote_ip, login.app if login else "")
        except TooManyLogins as busy:
            self._turn_away(busy)
            return
        if not hold:
            self._check_pass(line)
            return
        self.del_channel()                  # read nothing more from the client meanwhile
        self.ioloop.call_later(hold, self._answer_held_pass, line, _errback=self.handle_error)

    def _answer_held_pass(self, line: str) -> None:
        if self._closed:                    # the idle timeout or the server closed it meanwhile
            return
        self.add_channel()
        self._check_pass(line)

    def _check_pass(self, line: str) -> None:
        try:
            super().ftp_PASS(line)
        except TooManyLogins as busy:       # no hash slot free
            self._turn_away(busy)

    def _turn_away(self, busy: TooManyLogins) -> None:
        self.respond(f"421 Too many login attempts; try again in {busy.retry_after} s.")
        self.close_when_done()


def _full_command(cmd: str, arg: str) -> str:
    """'SITE' with its subcommand ('SITE CHMOD'), as pyftpdlib names it."""
    return f"SITE {arg.split(' ')[0].upper()}" if cmd == "SITE" and arg else cmd


class _Server(ThreadedFTPServer):
    def __init__(self, address: tuple[str, int], handler: type):
        # pyftpdlib keeps these on the class, where one server's close_all() would end every
        # other server's sessions in the process.
        self._exit, self._lock = threading.Event(), threading.Lock()
        super().__init__(address, handler, ioloop=IOLoop())

    def _accept_new_cons(self) -> bool:
        # pyftpdlib compares with <=, which lets max_cons + 1 sessions in.
        return self._map_len() < self.max_cons


def build_server(services: Services, verifier: Verifier | None = None) -> ThreadedFTPServer:
    """A server listening on ftp.listen, not yet serving (see serve_ftp); logins checked by
    `verifier`, or a Verifier of its own."""
    ftp = services.config.ftp
    if not ftp.listen:
        raise ConfigError("ftp.listen is not set (e.g. ftp: {listen: 127.0.0.1:2121})")
    host, _, port = ftp.listen.rpartition(":")
    try:
        server = _Server((host.strip("[]"), int(port)), _handler_class(services, verifier))
    except OSError as exc:
        reason = exc.strerror or (exc.args[0].strerror if exc.args and isinstance(exc.args[0], OSError) else exc)
        raise ConfigError(f"ftp.listen: cannot listen on {ftp.listen}: {reason}") from None
    server.max_cons = ftp.max_connections
    server.max_cons_per_ip = ftp.max_connections_per_ip
    return server


def serve_ftp(services: Services, stop: threading.Event | None = None,
              server: ThreadedFTPServer | None = None) -> None:
    """Serve FTP (FTPS when a certificate is configured) until `stop` is set, or forever;
    on `server` if given (already listening: callers that must know it is), else a new one."""
    stop = stop or threading.Event()
    server = server or build_server(services)
    ftp = services.config.ftp
    log.info("serving %s on %s (passive ports %s)", "FTP/FTPS" if ftp.certificate else "FTP",
             ftp.listen, ftp.passive_ports)
    try:
        while not stop.is_set():
            server.serve_forever(timeout=POLL_SECONDS, blocking=False, handle_exit=False)
    finally:
        server.close_all()
        log.info("FTP server stopped")


def _handler_class(services: Services, verifier: Verifier | None) -> type:
    ftp = services.config.ftp
    settings = dict(services=services, authorizer=AppAuthorizer(services, verifier),
                    abstracted_fs=ReleaseFS, banner="Sluice FTP ready.", timeout=LOGIN_TIMEOUT,
                    passive_ports=list(ftp.passive_range),
                    masquerade_address=_public_address(ftp),
                    auth_failed_timeout=0)      # LoginThrottle decides how long to hold answers
    if not ftp.certificate:
        return type("AppFTPHandler", (_AppSession, FTPHandler), settings)
    handler: type[TLS_FTPHandler] = type("AppFTPSHandler", (_AppSession, TLS_FTPHandler), {
        **settings, "certfile": str(ftp.certificate), "keyfile": str(ftp.private_key),
        "tls_control_required": ftp.require_tls, "tls_data_required": ftp.require_tls})
    try:
        handler.get_ssl_context()
    except (OSError, SSL.Error) as exc:
        raise ConfigError(f"ftp.certificate / ftp.private_key: cannot load {ftp.certificate} "
                          f"and {ftp.private_key}: {exc}") from None
    return handler


def _public_address(ftp: FtpConfig) -> str | None:
    """PASV replies carry an IPv4 address, so a host name is resolved once, at start."""
    if not ftp.public_host:
        return None
    try:
        return socket.gethostbyname(ftp.public_host)
    except OSError as exc:
        raise ConfigError(f"ftp.public_host: cannot resolve {ftp.public_host!r}: {exc}") from None
