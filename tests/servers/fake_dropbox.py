"""A local fake of the Dropbox API v2 over HTTPS, for tests, that the real `dropbox` SDK accepts.

Three TLS listeners stand in for the api, content and notify hosts (`hosts` holds the
DROPBOX_API_*_HOST values), so a test can tell which host each route was called on. One
account; tests shape its files with put/delete/move and inject failures with fail_next,
expire_access_tokens and invalidate_cursors.

Change tracking: every change gets a sequence number and `_log` keeps, per path, the number
of its latest change (a path that no longer exists is a tombstone). A cursor holds a
position in that sequence, so list_folder/continue answers the current state of every path in
scope changed after it, oldest change first. The first listing is the same walk from 0 that
leaves out tombstones older than the listing (`since`). Deleting a folder drops the entries
below it, so the folder comes back as one `deleted` entry.

Choices where the documentation leaves room:
- A malformed cursor is a 400 plain-text error (the real API answers a bad argument that way).
- longpoll on an invalidated cursor is 409 `reset` (ListFolderLongpollError.reset); a cursor
  invalidated while its longpoll waits gets {"changes": true}, so the client calls continue
  and meets `reset` there.
- recursive list_folder of a folder other than the root lists the folder itself too, as
  Dropbox does.
- fail_next: 429 answers JSON with `retry_after` rounded up to whole seconds (the SDK only
  decodes an integer; pass 0 to retry at once; None sends no hint, which the SDK reads as 1);
  any other status answers its plain-text reason phrase.
- reset() keeps the listeners, `longpoll_scale`, `page_size` and issued tokens (expired ones
  become valid again, so a session-wide client keeps working); cursors from before it get
  `reset`.
- /oauth2/token accepts the app as client_id/client_secret form fields (what the SDK sends),
  as HTTP Basic, or client_id alone (PKCE).
"""
from __future__ import annotations

import base64
import collections
import json
import math
import secrets
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs

from orchestrator.sources.cloud_hashes import DropboxContentHash
from tests.servers import KeepAliveHandler, tls

HOST_ENV = {"api": "DROPBOX_API_HOST", "content": "DROPBOX_API_CONTENT_HOST",
            "notify": "DROPBOX_API_NOTIFY_HOST"}
NOT_FOUND = ("path/not_found/", {".tag": "path", "path": {".tag": "not_found"}})
TOKEN_LIFETIME = 14400


class Reply(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


class Refusal(Exception):
    """Raised by a handler to answer with `reply` instead of a result."""

    def __init__(self, reply: Reply):
        super().__init__(reply.status)
        self.reply = reply


def json_reply(obj: object, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **headers})


def text_reply(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


def route_error(summary: str, error: dict) -> Refusal:
    return Refusal(json_reply({"error_summary": summary + "..", "error": error}, 409))


def bad_input(text: str) -> Refusal:
    return Refusal(text_reply(400, text))


def parent_of(path_lower: str) -> str:
    return path_lower.rpartition("/")[0]


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normal_path(path: str) -> str:
    """A test-supplied path as Dropbox spells it: leading slash, no trailing slash."""
    return "/" + path.strip("/")


@dataclass(frozen=True)
class Folder:
    path_display: str
    id: str

    def metadata(self) -> dict:
        return {".tag": "folder", "name": self.path_display.rpartition("/")[2], "id": self.id,
                "path_lower": self.path_display.lower(), "path_display": self.path_display}


@dataclass(frozen=True)
class File:
    path_display: str
    id: str
    rev: str
    content: bytes
    content_hash: str
    modified: str

    def metadata(self) -> dict:
        return {".tag": "file", "name": self.path_display.rpartition("/")[2], "id": self.id,
                "client_modified": self.modified, "server_modified": self.modified,
                "rev": self.rev, "size": len(self.content), "path_lower": self.path_display.lower(),
                "path_display": self.path_display, "is_downloadable": True,
                "content_hash": self.content_hash}


def content_hash(content: bytes) -> str:
    digest = DropboxContentHash()
    digest.update(content)
    return digest.hexdigest()


def deleted_metadata(path_display: str) -> dict:
    return {".tag": "deleted", "name": path_display.rpartition("/")[2],
            "path_lower": path_display.lower(), "path_display": path_display}


@dataclass(frozen=True)
class Cursor:
    path: str           # path_lower of the listed folder, "" for the root
    recursive: bool
    pos: int            # changes up to this sequence number have been delivered
    since: int          # tombstones up to here predate the listing: not reported
    epoch: int          # cursors of an older epoch were invalidated
    limit: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(json.dumps(self.__dict__).encode()).decode()

    @classmethod
    def decode(cls, text: object) -> Cursor:
        try:
            return cls(**json.loads(base64.urlsafe_b64decode(str(text).encode())))
        except (ValueError, TypeError):     # binascii.Error is a ValueError
            raise bad_input('Error in call to API function: Invalid "cursor" parameter') from None

    def covers(self, path_lower: str) -> bool:
        if not self.recursive:
            return parent_of(path_lower) == self.path
        return path_lower == self.path or path_lower.startswith(self.path + "/")


class Route(NamedTuple):
    host: str
    handler: Callable[[dict], Reply]
    download: bool = False
    auth: bool = True


class FakeDropbox:
    app_key = "fake-app-key"
    app_secret = "fake-app-secret"
    refresh_token = "fake-refresh-token"

    def __init__(self, authority=None, page_size: int = 2000):
        self.authority = authority or tls.authority()
        self.ca_bundle = str(self.authority.bundle)
        self.page_size = page_size
        self.longpoll_scale = 1.0           # configuration: reset() leaves it alone
        self.hosts: dict[str, str] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._listeners: list[_Listener] = []
        self._stopping = False
        self._valid_tokens: set[str] = set()
        self._expired_tokens: set[str] = set()
        self._long_lived: str | None = None
        self._epoch = 0
        self._revs = 0                      # never reset: a stale rev must not name a new file
        self._routes = {
            "files/list_folder": Route("api", self._list_folder),
            "files/list_folder/continue": Route("api", self._continue),
            "files/list_folder/get_latest_cursor": Route("api", self._latest_cursor),
            "files/list_folder/longpoll": Route("notify", self._longpoll, auth=False),
            "files/get_metadata": Route("api", self._get_metadata),
            "files/download": Route("content", self._download, download=True),
        }
        self.reset()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeDropbox:
        self._stopping = False
        context = self.authority.server_context()
        for key, env in HOST_ENV.items():
            listener = _Listener(self, key, context)
            threading.Thread(target=listener.serve_forever, args=(0.05,), daemon=True).start()
            self._listeners.append(listener)
            self.hosts[env] = f"127.0.0.1:{listener.server_address[1]}"
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True           # releases waiting longpolls
            self._changed.notify_all()
        for listener in self._listeners:
            listener.shutdown()
            listener.server_close()
        self._listeners.clear()

    def __enter__(self) -> FakeDropbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            self._nodes: dict[str, File | Folder] = {}
            self._log: dict[str, tuple[int, str]] = {}    # path_lower -> (seq, path_display)
            self._seq = 0
            self._revisions: dict[str, File] = {}
            self._failures: dict[str, collections.deque] = collections.defaultdict(collections.deque)
            self._valid_tokens |= self._expired_tokens     # a session-wide client keeps working
            self._expired_tokens.clear()
            self.longpoll_backoff: int | None = None
            self.requests: collections.Counter[str] = collections.Counter()
            self.downloads: list[str] = []
            self.hosts_seen: dict[str, str] = {}
            self.invalidate_cursors()

    # -- test controls --------------------------------------------------------------------

    def access_token(self) -> str:
        with self._lock:
            if self._long_lived not in self._valid_tokens:
                self._long_lived = self._issue_token()
            return self._long_lived

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._expired_tokens |= self._valid_tokens
            self._valid_tokens.clear()

    def invalidate_cursors(self) -> None:
        with self._lock:
            self._epoch += 1
            self._changed.notify_all()

    def fail_next(self, route: str, status: int, retry_after: float | None = None,
                  times: int = 1) -> None:
        with self._lock:
            self._failures[route.strip("/")].extend([(status, retry_after)] * times)

    def put(self, path: str, content: bytes) -> None:
        with self._lock:
            parent = self._make_folders(parent_of(normal_path(path)))
            name = normal_path(path).rpartition("/")[2]
            existing = self._nodes.get(f"{parent}/{name}".lower())
            if isinstance(existing, Folder):
                raise IsADirectoryError(existing.path_display)
            fields = dict(rev=self._new_rev(), content=content, content_hash=content_hash(content),
                          modified=now_stamp())
            self._store(replace(existing, **fields) if existing
                        else File(f"{parent}/{name}", self._new_id(), **fields))

    def delete(self, path: str) -> None:
        with self._lock:
            self._remove(self._existing(path))

    def move(self, src: str, dst: str) -> None:
        with self._lock:
            node = self._existing(src)
            source, target = node.path_display.lower(), normal_path(dst).lower()
            if target in self._nodes or target.startswith(source + "/"):
                raise FileExistsError(dst)
            parent = self._make_folders(parent_of(normal_path(dst)))
            top = f"{parent}/{normal_path(dst).rpartition('/')[2]}"
            moved = self._subtree(source)
            self._remove(node)
            for item in moved:
                # Dropbox keeps ids across a move and gives the moved files new revisions.
                item = replace(item, path_display=top + item.path_display[len(node.path_display):])
                self._store(replace(item, rev=self._new_rev()) if isinstance(item, File) else item)

    # -- the account's tree (callers hold the lock) ---------------------------------------

    def _new_id(self) -> str:
        return "id:" + secrets.token_urlsafe(16)

    def _new_rev(self) -> str:
        self._revs += 1
        return f"{self._revs:06x}{secrets.token_hex(3)}"

    def _touch(self, path_display: str) -> None:
        self._seq += 1
        self._log[path_display.lower()] = (self._seq, path_display)
        self._changed.notify_all()

    def _store(self, node: File | Folder) -> None:
        self._nodes[node.path_display.lower()] = node
        if isinstance(node, File):
            self._revisions[node.rev] = node
        self._touch(node.path_display)

    def _existing(self, path: str) -> File | Folder:
        node = self._nodes.get(normal_path(path).lower())
        if node is None:
            raise FileNotFoundError(path)
        return node

    def _make_folders(self, path_display: str) -> str:
        """Creates the missing folders of `path_display`; returns it spelled as stored."""
        spelled = ""
        for name in filter(None, path_display.split("/")):
            node = self._nodes.get(f"{spelled}/{name}".lower())
            if isinstance(node, File):
                raise NotADirectoryError(node.path_display)
            if node is None:
                node = Folder(f"{spelled}/{name}", self._new_id())
                self._store(node)
            spelled = node.path_display
        return spelled

    def _subtree(self, path_lower: str) -> list[File | Folder]:
        """The node and everything below it, parents before children."""
        inside = [p for p in self._nodes if p == path_lower or p.startswith(path_lower + "/")]
        return [self._nodes[p] for p in sorted(inside, key=lambda p: (p.count("/"), p))]

    def _remove(self, node: File | Folder) -> None:
        """Deletes the node and all below it, leaving one tombstone at the top."""
        top = node.path_display.lower()
        for path_lower in [p for p in self._log if p.startswith(top + "/")]:
            del self._log[path_lower]
        for item in self._subtree(top):
            del self._nodes[item.path_display.lower()]
        self._touch(node.path_display)

    def _lookup(self, path: str) -> File | Folder | None:
        if path.startswith("id:"):
            return next((n for n in self._nodes.values() if n.id == path), None)
        if path.startswith("rev:"):
            return self._revisions.get(path[4:])
        if not path.startswith("/"):
            raise route_error("path/malformed_path/",
                              {".tag": "path", "path": {".tag": "malformed_path"}})
        if path == "/":
            raise bad_input('Specify the root folder as an empty string rather than as "/".')
        return self._nodes.get(path.lower())

    def _changes(self, cursor: Cursor) -> list[tuple[int, dict]]:
        """(seq, entry) for every path in scope changed after the cursor, oldest first."""
        changed = sorted((seq, p, display) for p, (seq, display) in self._log.items()
                         if seq > cursor.pos and cursor.covers(p))
        entries = []
        for seq, path_lower, display in changed:
            node = self._nodes.get(path_lower)
            if node is not None:
                entries.append((seq, node.metadata()))
            elif seq > cursor.since:
                entries.append((seq, deleted_metadata(display)))
        return entries

    def _page(self, cursor: Cursor) -> dict:
        changes = self._changes(cursor)
        page, has_more = changes[:cursor.limit], len(changes) > cursor.limit
        pos = page[-1][0] if has_more else self._seq
        return {"entries": [entry for _, entry in page],
                "cursor": replace(cursor, pos=pos).encode(), "has_more": has_more}

    def _current(self, text: object) -> Cursor:
        cursor = Cursor.decode(text)
        if cursor.epoch != self._epoch:
            raise route_error("reset/", {".tag": "reset"})
        return cursor

    def _listed_folder(self, path: str) -> str:
        if path == "":
            return ""
        node = self._lookup(path)
        if node is None:
            raise route_error(*NOT_FOUND)
        if not isinstance(node, Folder):
            raise route_error("path/not_folder/", {".tag": "path", "path": {".tag": "not_folder"}})
        return node.path_display.lower()

    def _new_cursor(self, arg: dict, pos: int) -> Cursor:
        since = 0 if arg.get("include_deleted") else self._seq
        limit = min(arg.get("limit") or self.page_size, self.page_size)
        return Cursor(self._listed_folder(arg.get("path", "")), bool(arg.get("recursive")),
                      pos, since, self._epoch, limit)

    # -- routes (called with the lock held, except longpoll's wait) -----------------------

    def _list_folder(self, arg: dict) -> Reply:
        return json_reply(self._page(self._new_cursor(arg, pos=0)))

    def _continue(self, arg: dict) -> Reply:
        return json_reply(self._page(self._current(arg.get("cursor"))))

    def _latest_cursor(self, arg: dict) -> Reply:
        return json_reply({"cursor": self._new_cursor(arg, pos=self._seq).encode()})

    def _longpoll(self, arg: dict) -> Reply:
        cursor = self._current(arg.get("cursor"))
        timeout = arg.get("timeout", 30)
        if not isinstance(timeout, int) or not 30 <= timeout <= 480:
            raise bad_input(f"timeout: {timeout!r} is not within bounds [30, 480]")
        self._changed.wait_for(
            lambda: self._stopping or cursor.epoch != self._epoch or self._changes(cursor),
            timeout * self.longpoll_scale)
        answer = {"changes": cursor.epoch != self._epoch or bool(self._changes(cursor))}
        if self.longpoll_backoff is not None:
            answer["backoff"] = self.longpoll_backoff
        return json_reply(answer)

    def _get_metadata(self, arg: dict) -> Reply:
        path = arg.get("path", "")
        if path == "":
            raise bad_input("Metadata for the root folder is unsupported.")
        node = self._lookup(path)
        if node is not None:
            return json_reply(node.metadata())
        if arg.get("include_deleted") and path.lower() in self._log:
            return json_reply(deleted_metadata(self._log[path.lower()][1]))
        raise route_error(*NOT_FOUND)

    def _download(self, arg: dict) -> Reply:
        node = self._lookup(arg.get("path", ""))
        if node is None:
            raise route_error(*NOT_FOUND)
        if isinstance(node, Folder):
            raise route_error("path/not_file/", {".tag": "path", "path": {".tag": "not_file"}})
        self.downloads.append(node.path_display)
        metadata = {k: v for k, v in node.metadata().items() if k != ".tag"}   # a FileMetadata
        # json.dumps escapes non-ASCII as \uXXXX, as Dropbox does in this header.
        return Reply(200, node.content, {"Content-Type": "application/octet-stream",
                                         "Dropbox-API-Result": json.dumps(metadata)})

    # -- HTTP dispatch --------------------------------------------------------------------

    def dispatch(self, host: str, url_path: str, headers, body: bytes) -> Reply:
        route = url_path.split("?")[0].removeprefix("/2/").strip("/")
        with self._lock:
            self.requests[route] += 1
            self.hosts_seen[route] = host
            failure = self._failures[route].popleft() if self._failures.get(route) else None
            try:
                if failure:
                    return self._injected(*failure)
                if route == "oauth2/token" and host == "api":
                    return self._token(headers, body)
                return self._call(route, host, headers, body)
            except Refusal as refusal:
                return refusal.reply

    def _call(self, route: str, host: str, headers, body: bytes) -> Reply:
        spec = self._routes.get(route)
        if spec is None:
            raise bad_input(f'Unknown API function: "{route}" (not implemented by the fake)')
        if spec.host != host:
            raise bad_input(f'Error in call to API function "{route}": '
                            f"this route belongs on the {spec.host} host, not {host}")
        if spec.auth:
            self._authorize(route, headers.get("Authorization", ""))
        raw = headers.get("Dropbox-API-Arg", "") if spec.download else body
        try:
            arg = json.loads(raw or "{}")
        except ValueError:
            raise bad_input(f'Error in call to API function "{route}": could not decode input as JSON') from None
        return spec.handler(arg)

    def _authorize(self, route: str, header: str) -> None:
        token = header.removeprefix("Bearer ")
        if token == header:
            raise bad_input(f'Error in call to API function "{route}": '
                            'Must provide HTTP header "Authorization" or URL parameter "authorization".')
        if token in self._expired_tokens:
            raise Refusal(json_reply({"error_summary": "expired_access_token/..",
                                      "error": {".tag": "expired_access_token"}}, 401))
        if token not in self._valid_tokens:
            raise Refusal(json_reply({"error_summary": "invalid_access_token/..",
                                      "error": {".tag": "invalid_access_token"}}, 401))

    def _injected(self, status: int, retry_after: float | None) -> Reply:
        if status != 429:
            return text_reply(status, HTTPStatus(status).phrase)
        error: dict = {"reason": {".tag": "too_many_requests"}}
        headers = {}
        if retry_after is not None:
            error["retry_after"] = math.ceil(retry_after)
            headers["Retry-After"] = str(error["retry_after"])
        return json_reply({"error_summary": "too_many_requests/..", "error": error}, 429, **headers)

    def _token(self, headers, body: bytes) -> Reply:
        """The refresh-token grant; the client may authenticate in the form or with Basic."""
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            basic = base64.b64encode(f"{self.app_key}:{self.app_secret}".encode()).decode()
            client_ok = authorization == "Basic " + basic
        else:   # a PKCE client sends no secret
            client_ok = form.get("client_id") == self.app_key and \
                form.get("client_secret", self.app_secret) == self.app_secret
        if not client_ok:
            return json_reply({"error": "invalid_client",
                               "error_description": "Invalid client_id or client_secret"}, 400)
        if form.get("grant_type") != "refresh_token" or form.get("refresh_token") != self.refresh_token:
            return json_reply({"error": "invalid_grant",
                               "error_description": "refresh token is invalid or revoked"}, 400)
        return json_reply({"access_token": self._issue_token(), "token_type": "bearer",
                           "expires_in": TOKEN_LIFETIME})

    def _issue_token(self) -> str:
        token = "fake-token-" + secrets.token_urlsafe(24)
        self._valid_tokens.add(token)
        return token


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeDropbox, host: str, context: ssl.SSLContext):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake, self.host = fake, host
        # The handshake happens in the connection's thread, not in the accept loop.
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def handle_error(self, request, client_address) -> None:
        # Clients that hang up or distrust the CA are normal; a bug in the fake is reported.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(KeepAliveHandler):
    server: _Listener
    timeout = 60                            # idle keep-alive connections end eventually

    def setup(self) -> None:
        super().setup()
        self.connection.do_handshake()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        reply = self.server.fake.dispatch(self.server.host, self.path, self.headers, body)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("X-Dropbox-Request-Id", secrets.token_hex(8))
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
