"""Whether two URLs name the same repository (Kudu's generic deploy hook names the
repository it wants fetched; Sluice syncs an app only when that is the app's own source).

Compared: the scheme, the host (any case, a default port dropped) and the path. Ignored:
credentials, a `#commit` (Kudu's way to name a commit: Sluice deploys the branch's head,
never a commit a request names), a trailing `/` or `.git`. Git's scp-like `user@host:path`
is ssh; a bare path or `file://` URL is a local repository, compared by its real path.
"""
from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import unquote, urlsplit

SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?!//)(?P<path>.*)$")
DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418}
SSH_SCHEMES = {"ssh", "git+ssh", "ssh+git"}


def same_repository(a: str, b: str) -> bool:
    return repository_key(a) == repository_key(b)


def repository_key(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path) with everything that does not tell repositories apart
    taken out."""
    url = url.strip().split("#", 1)[0]
    if "://" in url:
        parts = urlsplit(url)
        scheme = "ssh" if parts.scheme.lower() in SSH_SCHEMES else parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if parts.port and parts.port != DEFAULT_PORTS.get(scheme):
            host = f"{host}:{parts.port}"
        path = unquote(parts.path)
        if scheme == "file":
            return "file", "", _bare(os.path.realpath(path or "/"))
        return scheme, host, _bare(posixpath.normpath("/" + path.lstrip("/")))
    scp = SCP_LIKE.match(url)
    if scp and not url.startswith(("/", ".")):
        return "ssh", scp["host"].lower(), _bare(posixpath.normpath("/" + scp["path"].lstrip("/")))
    return "file", "", _bare(os.path.realpath(os.path.expanduser(url)))


def _bare(path: str) -> str:
    path = path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-len(".git")].rstrip("/")
    return path or "/"
