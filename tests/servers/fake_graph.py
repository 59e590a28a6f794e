"""A local Microsoft Graph for tests: OneDrive delta and content, plus the Microsoft identity
platform authority MSAL signs in against, over HTTPS on one loopback port.

What a client meets here is what the documentation says it meets in production:
- delta reports items by id; `parentReference` carries no path; properties are left out as
  the delta remarks list per drive type (a business deletion has no name); a change below a
  folder also reports the folders above it unless the request sends the `deltaExcludeParent`
  header; a moved folder is one changed item, its children are not re-reported;
- only personal drives allow a folder-scoped delta (business ones answer 501 notSupported), and
  it reports items that left the folder as deleted;
- a token issued before `require_resync()` answers 410 Gone, with a fresh enumeration in
  `Location`;
- `/content` answers 302 to a pre-authenticated URL that refuses an Authorization header (the
  real download host is another host, where a forwarded bearer token is an error);
- refresh tokens rotate on every use and the old ones stay valid; a refresh token, an id token
  and client_info are returned only when `offline_access`, `openid` and `client_info=1` ask
  for them; a domain-named tenant's endpoints carry its GUID.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import itertools
import json
import mimetypes
import re
import secrets
import ssl
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

from orchestrator.sources.cloud_hashes import QuickXorHash
from tests.servers import KeepAliveHandler, tls

MSA_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"      # the tenant of every personal account
SHARED_TENANTS = ("common", "organizations", "consumers")
GRAPH_RESOURCE = "https://graph.microsoft.com/"
FILES_SCOPES = frozenset({"Files.Read", "Files.Read.All", "Files.ReadWrite", "Files.ReadWrite.All"})
ROUTES = ("delta", "content", "download", "token")
DEFAULT_HASHES = {"personal": ("quickXorHash", "sha256Hash"), "business": ("quickXorHash",)}
TOKEN_LIFETIME = 3599
ABSENT = ""                  # an item's place while it does not exist (no parent id is empty)
GRAPH_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"
AAD_JSON = "application/json; charset=utf-8"
# what delta leaves out, per the driveItem delta remarks: (drive type, deleted) -> properties
DELTA_OMITS = {("personal", False): (), ("personal", True): ("cTag", "size"),
               ("business", False): ("cTag",), ("business", True): ("cTag", "name")}
FAILURES = {429: ("activityLimitReached", "The app or user has been throttled."),
            503: ("serviceNotAvailable", "The service is not available. Try the request again "
                                         "after a delay. There may be a Retry-After header.")}


def _quick_xor(data: bytes) -> str:
    digest = QuickXorHash()
    digest.update(data)
    return digest.b64digest()


HASHERS: dict[str, Callable[[bytes], str]] = {
    "quickXorHash": _quick_xor,
    "sha1Hash": lambda data: hashlib.sha1(data).hexdigest().upper(),
    "sha256Hash": lambda data: hashlib.sha256(data).hexdigest().upper(),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _parts(path: str) -> list[str]:
    parts = [part for part in path.strip("/").split("/") if part]
    if not parts:
        raise ValueError(f"not a path below the drive root: {path!r}")
    return parts


# ---------------------------------------------------------------------------------- drives

@dataclass(eq=False)
class _Item:
    id: str
    name: str
    parent: str | None                   # the parent folder's id (its last one once deleted)
    content: bytes | None = None         # None for a folder
    children: dict[str, str] = field(default_factory=dict)   # lower-cased name -> id
    deleted: bool = False
    history: list[tuple[int, str | None]] = field(default_factory=list)   # (seq, parent or ABSENT)
    changed: int = 0                     # seq of its own last change
    touched: int = 0                     # seq of the last change at or below it
    version: int = 0
    content_version: int = 0
    created: str = field(default_factory=_now)
    modified: str = ""
    hashes: dict[str, str] = field(default_factory=dict)
    download_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @property
    def is_folder(self) -> bool:
        return self.content is None

    def fill(self, content: bytes) -> None:
        self.content = bytes(content)
        self.hashes = {name: hasher(self.content) for name, hasher in HASHERS.items()}


class _Drive:
    """One drive's items, live and deleted, with a sequence number per change: delta is the set
    of items whose place or content changed after the sequence number a token remembers."""

    def __init__(self, drive_id: str, kind: str, new_id: Callable[[], str]):
        self.id, self.kind, self._new_id = drive_id, kind, new_id
        self.seq = 0
        self.items: dict[str, _Item] = {}
        self.root = self._create(None, "root", None)

    # ---- changes made by tests

    def put(self, path: str, content: bytes) -> None:
        *folders, name = _parts(path)
        parent = self._folder(folders)
        existing = parent.children.get(name.lower())
        if existing is None:
            self._create(parent, name, content)
            return
        item = self.items[existing]
        if item.is_folder:
            raise IsADirectoryError(path)
        item.fill(content)
        self._record(item, content=True)

    def delete(self, path: str) -> None:
        item = self._existing(path)
        # children first, so a client that removes folders only once empty can follow along
        for node in reversed(list(self._subtree(item))):
            node.deleted = True
            self._record(node, moved=True)
        del self.items[item.parent].children[item.name.lower()]

    def move(self, src: str, dst: str) -> None:
        source, target = [part.lower() for part in _parts(src)], _parts(dst)
        if len(target) > len(source) and [part.lower() for part in target[:len(source)]] == source:
            raise ValueError(f"cannot move {src!r} into itself")
        item = self._existing(src)
        *folders, name = target
        target = self._folder(folders)
        if target.children.get(name.lower(), item.id) != item.id:
            raise FileExistsError(dst)
        old_parent = self.items[item.parent]
        del old_parent.children[item.name.lower()]
        item.parent, item.name = target.id, name
        target.children[name.lower()] = item.id
        self._record(item, moved=True)
        for ancestor in self._lineage(old_parent):
            ancestor.touched = self.seq

    # ---- what delta reads

    def resolve(self, path: str) -> _Item | None:
        item = self.root
        for name in _parts(path):
            child = item.children.get(name.lower())
            if child is None:
                return None
            item = self.items[child]
        return item

    def changes(self, scope: _Item, since: int, with_parents: bool) -> list[tuple[_Item, bool]]:
        """What a delta from `since` reports for the folder `scope`: (item, reported as deleted),
        parents before children and deletions last. An item that left the scope is deleted as
        far as the scope is concerned. Since 0 nothing existed: that is the initial enumeration."""
        live, gone = [], []
        for item in self.items.values():
            now, then = self._inside(item, scope, None), self._inside(item, scope, since)
            if now and (not then or item.changed > since or with_parents and item.touched > since):
                live.append(item)
            elif then and not now:
                gone.append(item)
        live.sort(key=lambda item: (len(list(self._lineage(item))), item.changed))
        gone.sort(key=lambda item: item.changed)
        return [(item, False) for item in live] + [(item, True) for item in gone]

    def render(self, item: _Item, gone: bool, download_url: str, hashes: tuple[str, ...]) -> dict:
        deleted = gone or item.deleted
        reference = {"driveId": self.id, "driveType": self.kind}
        if item.parent:
            reference["id"] = item.parent
        tag = "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, item.id)).upper() + "}"
        body = {"id": item.id, "name": item.name, "size": self._size(item),
                "parentReference": reference, "createdDateTime": item.created,
                "lastModifiedDateTime": item.modified, "eTag": f'"{tag},{item.version}"',
                "cTag": f'"c:{tag},{item.content_version}"'}
        if item is self.root:
            body["root"] = {}
        if deleted:
            body["folder" if item.is_folder else "file"] = {}
            body["deleted"] = {"state": "deleted"}
        elif item.is_folder:
            body["folder"] = {"childCount": len(item.children)}
        else:
            mime = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            body["file"] = {"mimeType": mime,
                            "hashes": {name: item.hashes[name] for name in hashes}}
            body["@microsoft.graph.downloadUrl"] = download_url
        omitted = DELTA_OMITS[self.kind, deleted]
        return {name: value for name, value in body.items() if name not in omitted}

    def path_of(self, item: _Item) -> str:
        return "/".join(node.name for node in reversed(list(self._lineage(item)))
                        if node is not self.root)

    # ---- bookkeeping

    def _create(self, parent: _Item | None, name: str, content: bytes | None) -> _Item:
        item = _Item(self._new_id(), name, parent.id if parent else None)
        if content is not None:
            item.fill(content)
        self.items[item.id] = item
        if parent:
            parent.children[name.lower()] = item.id
        self._record(item, moved=True, content=not item.is_folder)
        return item

    def _record(self, item: _Item, *, moved: bool = False, content: bool = False) -> None:
        """One change to `item`: a new sequence number for it and every folder above it."""
        self.seq += 1
        item.changed, item.version, item.modified = self.seq, item.version + 1, _now()
        item.content_version += content
        if moved:
            item.history.append((self.seq, ABSENT if item.deleted else item.parent))
        for ancestor in self._lineage(item):
            ancestor.touched = self.seq

    def _folder(self, names: list[str]) -> _Item:
        """The folder at `names`, created where missing (as `put` promises)."""
        folder = self.root
        for name in names:
            child = folder.children.get(name.lower())
            folder = self.items[child] if child else self._create(folder, name, None)
            if not folder.is_folder:
                raise NotADirectoryError(name)
        return folder

    def _existing(self, path: str) -> _Item:
        item = self.resolve(path)
        if item is None:
            raise FileNotFoundError(path)
        return item

    def _lineage(self, item: _Item) -> Iterator[_Item]:
        """`item`, its parent, ... up to the root (through the last parents of deleted items)."""
        node: _Item | None = item
        while node is not None:
            yield node
            node = self.items[node.parent] if node.parent else None

    def _subtree(self, item: _Item) -> Iterator[_Item]:
        yield item
        for child in item.children.values():
            yield from self._subtree(self.items[child])

    def _place(self, item: _Item, at: int | None) -> str | None:
        """Where `item` was after change `at` (now if None): its parent's id, None for the root,
        ABSENT if it did not exist."""
        if at is None:
            return ABSENT if item.deleted else item.parent
        place: str | None = ABSENT
        for seq, parent in item.history:
            if seq > at:
                break
            place = parent
        return place

    def _inside(self, item: _Item, scope: _Item, at: int | None) -> bool:
        node = item
        while True:
            place = self._place(node, at)
            if place == ABSENT:
                return False
            if node is scope:
                return True
            if place is None:
                return False
            node = self.items[place]

    def _size(self, item: _Item) -> int:
        if not item.is_folder:
            return len(item.content)
        return sum(self._size(self.items[child]) for child in item.children.values())


# ---------------------------------------------------------------------------------- protocol

@dataclass(frozen=True)
class _Cursor:
    """What a delta token stands for. Until `upto` is set it asks for the changes after `since`;
    the first page fixes them (`ids`), later pages are slices of that list."""
    drive_id: str
    scope_id: str
    since: int
    top: int
    upto: int | None = None
    ids: tuple[tuple[str, bool], ...] = ()        # (item id, reported as deleted)
    offset: int = 0


@dataclass
class _Grant:
    drive_id: str
    delegated: bool
    scopes: frozenset[str]
    expired: bool = False


@dataclass
class _Request:
    path: str                       # the URL path as sent: the links that continue it reuse it
    params: dict[str, str]          # the route's captures, percent-decoded
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _Stop(Exception):
    """Ends a request early with `reply` (an error the client is meant to see)."""

    def __init__(self, reply: _Reply):
        super().__init__(reply.status)
        self.reply = reply


def _json(status: int, payload: dict, headers: dict | None = None,
          content_type: str = GRAPH_JSON) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(),
                  {"Content-Type": content_type, **(headers or {})})


def _graph_error(status: int, code: str, message: str, headers: dict | None = None) -> _Reply:
    inner = {"date": _now(), "request-id": str(uuid.uuid4()),
             "client-request-id": str(uuid.uuid4())}
    return _json(status, {"error": {"code": code, "message": message, "innerError": inner}},
                 headers)


def _aad_error(status: int, error: str, code: int, description: str,
               headers: dict | None = None) -> _Reply:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return _json(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
                             f"Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }, headers, AAD_JSON)


def _retry_after(seconds: float) -> str:
    # HTTP allows whole seconds only; fractions are let through so tests need not sleep long
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _tenant_id(tenant: str) -> str:
    """The GUID the identity platform knows a tenant by: a domain name maps to a stable one."""
    if tenant == "consumers":
        return MSA_TENANT
    try:
        return str(uuid.UUID(tenant))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_DNS, tenant.lower()))


def _short_scope(scope: str) -> str:
    return scope[len(GRAPH_RESOURCE):] if scope.startswith(GRAPH_RESOURCE) else scope


_DRIVE = r"/v1\.0/(?:drives/(?P<drive>[^/]+)|me/drive)"
_ENDPOINTS = (
    ("GET", re.compile(r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration"),
     "_discovery"),
    ("POST", re.compile(r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token"), "_token"),
    ("GET", re.compile(_DRIVE + r"/root(?::/(?P<path>[^:]+):)?/delta"), "_delta"),
    ("GET", re.compile(_DRIVE + r"/items/(?P<item>[^/]+)/content"), "_content"),
    ("GET", re.compile(r"/download/(?P<key>[^/]+)"), "_download"),
)


# ---------------------------------------------------------------------------------- the fake

class FakeGraph:
    """Microsoft Graph (OneDrive) and an OAuth authority at https://127.0.0.1:PORT.

    One delegated user owns `personal_drive_id` (/me/drive); app-only tokens reach
    `business_drive_id`. One instance per test session; `reset()` between tests.
    """

    def __init__(self, authority: tls.TestAuthority | None = None, page_size: int = 200):
        self.ca = authority or tls.authority()
        self.ca_bundle = str(self.ca.bundle)
        self.page_size = page_size
        self.client_id = "5b7f1c36-2d0e-4c1b-9a57-6f0e8d3c2a41"
        self.client_secret = "fake-graph~client~secret"
        self.personal_drive_id = secrets.token_hex(8)
        self.business_drive_id = "b!" + _b64url(secrets.token_bytes(48))
        self._user_oid = "00000000-0000-0000-" + secrets.token_hex(6)
        self._user_sub = _b64url(secrets.token_bytes(32))
        self._signing_key = secrets.token_bytes(32)
        self._serial = itertools.count(101)           # item ids stay unique across resets
        self._lock = threading.RLock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.downloads: list[str] = []
        self.token_grants: list[str] = []
        self.drive_hashes: dict[str, tuple[str, ...]] = {}
        self._drives: dict[str, _Drive] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: set[str] = set()
        self._cursors: dict[str, _Cursor] = {}
        self._gone: dict[str, str] = {}               # delta token -> resync code it answers
        self._failures = {route: collections.deque() for route in ROUTES}   # (status, retry_after)
        self.reset()

        fake = self

        class Handler(_Handler):
            graph = fake

        self._httpd = _TlsServer(("127.0.0.1", 0), Handler, self.ca.server_context())
        self._thread: threading.Thread | None = None
        self.base_url = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        self.graph_url = self.base_url + "/v1.0"

    # ---- lifecycle

    def start(self) -> FakeGraph:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        with self._lock:
            personal = _Drive(self.personal_drive_id, "personal", self._personal_item_id)
            business = _Drive(self.business_drive_id, "business", self._business_item_id)
            self._drives = {personal.id: personal, business.id: business}
            self.drive_hashes.clear()
            self.drive_hashes.update({drive.id: DEFAULT_HASHES[drive.kind]
                                      for drive in (personal, business)})
            for collection in (self.requests, self.downloads, self.token_grants, self._access,
                               self._refresh, self._cursors, self._gone, *self._failures.values()):
                collection.clear()

    # ---- test controls

    def authority_url(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}"

    def issue_refresh_token(self) -> str:
        """A refresh token of the personal drive's user, as a sign-in elsewhere would give."""
        with self._lock:
            return self._new_refresh_token()

    def put(self, drive_id: str, path: str, content: bytes) -> None:
        with self._lock:
            self._drives[drive_id].put(path, content)

    def delete(self, drive_id: str, path: str) -> None:
        with self._lock:
            self._drives[drive_id].delete(path)

    def move(self, drive_id: str, src: str, dst: str) -> None:
        with self._lock:
            self._drives[drive_id].move(src, dst)

    def require_resync(self, code: str = "resyncChangesApplyDifferences") -> None:
        with self._lock:
            self._gone.update(dict.fromkeys(self._cursors, code))

    def fail_next(self, route: str, status: int, retry_after: float | None = None,
                  times: int = 1) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, not {route!r}")
        with self._lock:
            self._failures[route].extend([(status, retry_after)] * times)

    def expire_access_tokens(self) -> None:
        with self._lock:
            for grant in self._access.values():
                grant.expired = True

    # ---- requests

    def _handle(self, method: str, target: str, headers: Message, body: bytes) -> _Reply:
        url = urlsplit(target)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        for verb, pattern, endpoint in _ENDPOINTS:
            match = pattern.fullmatch(url.path)
            if match and verb == method:
                params = {name: unquote(value)
                          for name, value in match.groupdict().items() if value}
                request = _Request(url.path, params, query, headers, body)
                with self._lock:
                    try:
                        return getattr(self, endpoint)(request)
                    except _Stop as stop:
                        return stop.reply
        return _graph_error(400, "BadRequest", f"Resource not found for the segment {url.path!r}.")

    def _arrive(self, route: str) -> None:
        """Counts the request, then answers it with the next failure injected for its route."""
        self.requests[route] += 1
        if not self._failures.get(route):
            return
        status, retry_after = self._failures[route].popleft()
        headers = {} if retry_after is None else {"Retry-After": _retry_after(retry_after)}
        if route == "token":
            raise _Stop(_aad_error(status, "temporarily_unavailable", 90033,
                                   "A transient error has occurred. Please try again.", headers))
        code, message = FAILURES.get(status, ("generalException", "An unspecified error occurred."))
        raise _Stop(_graph_error(status, code, message, headers))

    # ---- the authority

    def _discovery(self, request: _Request) -> _Reply:
        self._arrive("discovery")
        tenant = request.params["tenant"]
        base = f"{self.base_url}/{tenant if tenant in SHARED_TENANTS else _tenant_id(tenant)}"
        issuer = "{tenantid}" if tenant in ("common", "organizations") else _tenant_id(tenant)
        return _json(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base_url}/{issuer}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "cloud_instance_name": "microsoftonline.com",
            "msgraph_host": urlsplit(self.base_url).netloc,
        }, content_type=AAD_JSON)

    def _token(self, request: _Request) -> _Reply:
        self._arrive("token")
        form = {name: values[-1] for name, values in
                parse_qs(request.body.decode(), keep_blank_values=True).items()}
        client_id, secret = self._client_credentials(form, request.headers)
        if client_id != self.client_id:
            raise _Stop(_aad_error(400, "unauthorized_client", 700016, f"Application with "
                                   f"identifier '{client_id}' was not found in the directory."))
        if secret is not None and secret != self.client_secret:
            raise _Stop(_aad_error(401, "invalid_client", 7000215,
                                   "Invalid client secret provided."))
        grant_type = form.get("grant_type", "")
        if grant_type == "client_credentials":
            tokens = self._app_tokens(form, secret)
        elif grant_type == "refresh_token":
            tokens = self._user_tokens(form)
        else:
            raise _Stop(_aad_error(400, "unsupported_grant_type", 70003,
                                   "The app requested an unsupported grant type."))
        self.token_grants.append(grant_type)
        return _json(200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                           "ext_expires_in": TOKEN_LIFETIME, **tokens}, content_type=AAD_JSON)

    @staticmethod
    def _client_credentials(form: dict, headers: Message) -> tuple[str | None, str | None]:
        """(client_id, client_secret) from HTTP Basic auth or the form, as RFC 6749 2.3.1 allows."""
        scheme, _, encoded = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            return unquote_plus(client_id), unquote_plus(secret)
        return form.get("client_id"), form.get("client_secret")

    def _app_tokens(self, form: dict, secret: str | None) -> dict:
        if secret is None:
            raise _Stop(_aad_error(401, "invalid_client", 7000218, "The request body must "
                                   "contain the following parameter: 'client_assertion' or "
                                   "'client_secret'."))
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or " " in scope:
            raise _Stop(_aad_error(400, "invalid_scope", 1002012, f"The provided value for scope "
                                   f"{scope} is not valid. Client credential flows must have a "
                                   "scope value with /.default suffixed to the resource "
                                   "identifier (application ID URI)."))
        return {"access_token": self._new_access_token(
            _Grant(self.business_drive_id, delegated=False, scopes=frozenset({"Files.Read.All"})))}

    def _user_tokens(self, form: dict) -> dict:
        if form.get("refresh_token") not in self._refresh:
            raise _Stop(_aad_error(400, "invalid_grant", 70000,
                                   "Provided grant is invalid or malformed."))
        scopes = [_short_scope(scope) for scope in form.get("scope", "").split()]
        granted = [scope for scope in scopes if scope != "offline_access"]
        tokens = {"scope": " ".join(granted), "access_token": self._new_access_token(
            _Grant(self.personal_drive_id, delegated=True, scopes=frozenset(granted)))}
        if "offline_access" in scopes:
            tokens["refresh_token"] = self._new_refresh_token()
        if "openid" in scopes:
            tokens["id_token"] = self._id_token()
        if form.get("client_info") == "1":
            client_info = {"uid": self._user_oid, "utid": MSA_TENANT}
            tokens["client_info"] = _b64url(json.dumps(client_info).encode())
        return tokens

    def _id_token(self) -> str:
        now = int(time.time())
        claims = {"ver": "2.0", "iss": f"{self.base_url}/{MSA_TENANT}/v2.0", "sub": self._user_sub,
                  "aud": self.client_id, "exp": now + TOKEN_LIFETIME, "iat": now, "nbf": now,
                  "name": "Sluice Test", "preferred_username": "sluice-test@outlook.com",
                  "oid": self._user_oid, "tid": MSA_TENANT}
        signed = ".".join(_b64url(json.dumps(part).encode()) for part in
                          ({"typ": "JWT", "alg": "HS256", "kid": "fake-graph"}, claims))
        signature = hmac.new(self._signing_key, signed.encode(), hashlib.sha256).digest()
        return f"{signed}.{_b64url(signature)}"

    def _new_access_token(self, grant: _Grant) -> str:
        token = secrets.token_urlsafe(32)
        self._access[token] = grant
        return token

    def _new_refresh_token(self) -> str:
        token = secrets.token_urlsafe(48)
        self._refresh.add(token)
        return token

    # ---- Graph

    def _authorize(self, request: _Request) -> _Drive:
        """The drive the request names, if its bearer token may read it."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        grant = self._access.get(token) if scheme.lower() == "bearer" else None
        if grant is None or grant.expired:
            message = ("Access token is empty." if not header else
                       "Lifetime validation failed, the token is expired." if grant else
                       "Access token validation failure.")
            challenge = (f'Bearer realm="", authorization_uri="{self.base_url}/common/oauth2/'
                         'authorize", client_id="00000003-0000-0000-c000-000000000000"')
            raise _Stop(_graph_error(401, "InvalidAuthenticationToken", message,
                                     {"WWW-Authenticate": challenge}))
        drive_id = request.params.get("drive")
        if drive_id is None and not grant.delegated:
            raise _Stop(_graph_error(400, "BadRequest", "/me request is only valid with delegated "
                                                        "authentication flow."))
        drive = self._drives.get(drive_id or self.personal_drive_id)
        if drive is None:
            raise _Stop(_graph_error(404, "itemNotFound", "The drive could not be found."))
        if drive.id != grant.drive_id or not grant.scopes & FILES_SCOPES:
            raise _Stop(_graph_error(403, "accessDenied", "Access denied."))
        return drive

    def _delta(self, request: _Request) -> _Reply:
        self._arrive("delta")
        drive = self._authorize(request)
        token = request.query.get("token")
        if token == "latest":
            scope = self._scope(drive, request)
            cursor = _Cursor(drive.id, scope.id, drive.seq, self.page_size, upto=drive.seq)
        elif token:
            cursor = self._cursor(token, drive, request.path)
        else:
            scope = self._scope(drive, request)
            top = int(request.query.get("$top", self.page_size))
            cursor = _Cursor(drive.id, scope.id, since=0, top=top)
        return self._delta_page(request, drive, cursor)

    def _scope(self, drive: _Drive, request: _Request) -> _Item:
        path = request.params.get("path")
        if path and drive.kind == "business":
            raise _Stop(_graph_error(501, "notSupported",
                                     "view.delta can only be called on the root."))
        item = drive.resolve(path) if path else drive.root
        if item is None or not item.is_folder:
            raise _Stop(_graph_error(404, "itemNotFound", "The resource could not be found."))
        return item

    def _cursor(self, token: str, drive: _Drive, path: str) -> _Cursor:
        cursor = self._cursors.get(token)
        if cursor is None or cursor.drive_id != drive.id:
            raise _Stop(_graph_error(400, "invalidRequest", "Provided sync token is malformed."))
        if token in self._gone:
            fresh = _Cursor(drive.id, cursor.scope_id, since=0, top=cursor.top)
            raise _Stop(_graph_error(410, self._gone[token], "Resync required: enumerate again "
                                     "from the Location link and reconcile.",
                                     {"Location": self._link(path, fresh)}))
        return cursor

    def _delta_page(self, request: _Request, drive: _Drive, cursor: _Cursor) -> _Reply:
        if cursor.upto is None:    # fix the change set now; later changes are the next delta's
            with_parents = "deltaExcludeParent" not in request.headers
            changes = drive.changes(drive.items[cursor.scope_id], cursor.since, with_parents)
            ids = tuple((item.id, gone) for item, gone in changes)
            cursor = replace(cursor, upto=drive.seq, ids=ids)
        end = cursor.offset + cursor.top
        hashes = self.drive_hashes[drive.id]
        shown = [(drive.items[item_id], gone) for item_id, gone in cursor.ids[cursor.offset:end]]
        page = {"@odata.context": f"{self.graph_url}/$metadata#Collection(driveItem)",
                "value": [drive.render(item, gone, self._download_url(item), hashes)
                          for item, gone in shown]}
        if end < len(cursor.ids):
            page["@odata.nextLink"] = self._link(request.path, replace(cursor, offset=end))
        else:
            following = _Cursor(drive.id, cursor.scope_id, since=cursor.upto, top=cursor.top)
            page["@odata.deltaLink"] = self._link(request.path, following)
        return _json(200, page)

    def _link(self, path: str, cursor: _Cursor) -> str:
        token = secrets.token_urlsafe(24)
        self._cursors[token] = cursor
        return f"{self.base_url}{path}?token={token}"

    def _content(self, request: _Request) -> _Reply:
        self._arrive("content")
        drive = self._authorize(request)
        item = drive.items.get(request.params["item"])
        if item is None or item.deleted or item.is_folder:
            raise _Stop(_graph_error(404, "itemNotFound", "The resource could not be found."))
        return _Reply(302, headers={"Location": self._download_url(item)})

    def _download_url(self, item: _Item) -> str:
        return f"{self.base_url}/download/{item.download_key}"

    def _download(self, request: _Request) -> _Reply:
        self._arrive("download")
        if "Authorization" in request.headers:
            raise _Stop(_graph_error(401, "unauthenticated", "A pre-authenticated download URL "
                                     "must be fetched without an Authorization header."))
        key = request.params["key"]
        for drive in self._drives.values():
            for item in drive.items.values():
                if item.download_key == key and not (item.deleted or item.is_folder):
                    self.downloads.append(drive.path_of(item))
                    return _Reply(200, item.content, {"Content-Type": "application/octet-stream"})
        raise _Stop(_graph_error(404, "itemNotFound", "The resource could not be found."))

    # ---- item ids in each drive type's style

    def _personal_item_id(self) -> str:
        return f"{self.personal_drive_id.upper()}!{next(self._serial)}"

    def _business_item_id(self) -> str:
        digest = hashlib.sha1(f"{self.business_drive_id}/{next(self._serial)}".encode()).digest()
        return "01" + base64.b32encode(digest).decode()[:32]


# ---------------------------------------------------------------------------------- HTTP

class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False           # clients' idle keep-alive connections must not hold up stop()

    def __init__(self, address, handler, context: ssl.SSLContext):
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request, client_address) -> None:
        # the TLS handshake runs here, in the connection's own thread, not in the accept loop
        request.settimeout(30)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with connection:
            self.RequestHandlerClass(connection, client_address, self)


class _Handler(KeepAliveHandler):
    graph: FakeGraph

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        self._serve(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _serve(self, body: bytes) -> None:
        try:
            reply = self.graph._handle(self.command, self.path, self.headers, body)
        except Exception:    # a bug in the fake: show it, and answer as Graph would
            traceback.print_exc()
            reply = _graph_error(500, "generalException", "An unspecified error has occurred.")
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
