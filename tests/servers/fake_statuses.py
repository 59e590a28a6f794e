"""The commit-status APIs of GitHub, Bitbucket Cloud and Azure DevOps on one loopback port,
each under its own prefix (a channel's `api_url` points there), checking what the providers
document and are known to refuse:

- GitHub `POST /repos/{owner}/{repo}/statuses/{sha}` (REST "Create a commit status"): a
  Bearer token, a User-Agent, `state` one of error|failure|pending|success, `description` of
  140 characters at most (422 otherwise), an http(s) `target_url` if any; 201.
- Bitbucket `POST /2.0/repositories/{workspace}/{repo}/commit/{sha}/statuses/build`: a Bearer
  token or Basic user:password, `key` (40 characters at most), `state` one of INPROGRESS|
  SUCCESSFUL|FAILED|STOPPED, a valid `url` (required: "Enter a valid URL."); 201.
- Azure DevOps `POST /{org}/{project}/_apis/git/repositories/{repo}/commits/{sha}/statuses
  ?api-version=7.1` ("Statuses - Create"): Basic auth whose password is the PAT,
  `state` a GitStatusState, `context.name`; 201.

Every request is kept (`requests`), and what each API accepted as a status (`statuses`).
"""
from __future__ import annotations

import base64
import http.server
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SHA = re.compile(r"^[0-9a-f]{40}$")
URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")
GITHUB_STATES = {"error", "failure", "pending", "success"}
BITBUCKET_STATES = {"INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"}
AZURE_STATES = {"notSet", "pending", "succeeded", "failed", "error", "notApplicable"}
PREFIXES = {"github": "github", "bitbucket": "bitbucket/2.0", "azure-devops": "azure"}
ROUTES = {
    "github": re.compile(r"^/github/repos/(?P<repo>[^/]+/[^/]+)/statuses/(?P<sha>[^/]+)$"),
    "bitbucket": re.compile(r"^/bitbucket/2\.0/repositories/(?P<repo>[^/]+/[^/]+)/commit/(?P<sha>[^/]+)"
                            r"/statuses/build/?$"),
    "azure-devops": re.compile(r"^/azure/(?P<org>[^/]+)/(?P<project>[^/]+)/_apis/git/repositories/"
                               r"(?P<name>[^/]+)/commits/(?P<sha>[^/]+)/statuses$"),
}


@dataclass(frozen=True)
class Request:
    provider: str | None
    path: str                   # with its query
    headers: dict[str, str]     # names lower-cased
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass(frozen=True)
class Status:
    provider: str
    repository: str             # owner/name; azure-devops: org/project/name
    sha: str
    state: str
    body: dict


class FakeStatuses:
    def __init__(self, url: str, tokens: dict[str, str], repositories: dict[str, set[str]]):
        self.url, self.tokens, self.repositories = url, tokens, repositories
        self.requests: list[Request] = []
        self.statuses: list[Status] = []
        self._lock = threading.Lock()

    def api_url(self, provider: str) -> str:
        return f"{self.url}/{PREFIXES[provider]}"

    def states(self, provider: str, sha: str) -> list[str]:
        return [s.state for s in list(self.statuses) if s.provider == provider and s.sha == sha]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        parts = urlsplit(path)
        provider, match = next(((p, m) for p, r in ROUTES.items() if (m := r.match(parts.path))),
                               (None, None))
        with self._lock:
            self.requests.append(Request(provider, path, headers, body))
        if provider is None or match is None:
            return 404, {"message": "Not Found"}
        if not self._authorized(provider, headers.get("authorization", "")):
            return 401, {"message": "Bad credentials"}
        try:
            data = json.loads(body)
        except ValueError:
            return 400, {"message": "Problems parsing JSON"}
        found = {k: unquote(v) for k, v in match.groupdict().items()}
        repository = found.get("repo") or f"{found['org']}/{found['project']}/{found['name']}"
        if repository not in self.repositories.get(provider, set()):
            return 404, {"message": "Not Found"}
        if not SHA.match(found["sha"]):
            return 422, {"message": f"No commit found for SHA: {found['sha']}"}
        problem = getattr(self, "_" + provider.replace("-", "_"))(data, headers, parse_qs(parts.query))
        if problem:
            return (400 if provider != "github" else 422), {"message": problem}
        state = data["state"]
        with self._lock:
            self.statuses.append(Status(provider, repository, found["sha"], state, data))
        return 201, {"state": state}

    def _authorized(self, provider: str, given: str) -> bool:
        token = self.tokens[provider]
        if provider == "azure-devops":
            return given.startswith("Basic ") and _basic_password(given) == token
        if provider == "bitbucket" and given.startswith("Basic "):
            return base64.b64decode(given[6:]).decode() == token
        return given == f"Bearer {token}"

    @staticmethod
    def _github(data: dict, headers: dict[str, str], query) -> str | None:
        if not headers.get("user-agent"):
            return "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"
        if data.get("state") not in GITHUB_STATES:
            return f"state is not included in the list: {data.get('state')!r}"
        if len(data.get("description") or "") > 140:
            return "description is too long (maximum is 140 characters)"
        if "target_url" in data and not URL.match(str(data["target_url"])):
            return "target_url is not a valid URL"
        return None

    @staticmethod
    def _bitbucket(data: dict, headers: dict[str, str], query) -> str | None:
        key = data.get("key")
        if not key or len(key) > 40:
            return f"key: Ensure this value has at most 40 characters (it has {len(key or '')})."
        if data.get("state") not in BITBUCKET_STATES:
            return f"state: {data.get('state')!r} is not a valid choice."
        if not URL.match(str(data.get("url") or "")):
            return "url: Enter a valid URL."
        return None

    @staticmethod
    def _azure_devops(data: dict, headers: dict[str, str], query) -> str | None:
        if query.get("api-version") != ["7.1"]:
            return "The api-version query parameter is required (7.1)"
        if data.get("state") not in AZURE_STATES:
            return f"Invalid state {data.get('state')!r}"
        if not (data.get("context") or {}).get("name"):
            return "The status context name is required"
        return None


def _basic_password(header: str) -> str:
    return base64.b64decode(header[len("Basic "):]).decode().partition(":")[2]


@contextmanager
def fake_statuses(tokens: dict[str, str], repositories: dict[str, set[str]]) -> Iterator[FakeStatuses]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    fake = FakeStatuses(f"http://127.0.0.1:{server.server_address[1]}", tokens, repositories)
    server.fake = fake  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:      # noqa: N802 (http.server's name)
        fake: FakeStatuses = self.server.fake  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, answer = fake.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass
