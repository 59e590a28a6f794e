"""Which repository a commit-status channel (`github`, `bitbucket`, `azure-devops`) marks:
its `repository` (and `organization`), or else the one the app's source URL names.

A source names a repository of a provider when its type is that provider's (any host: GitHub
Enterprise, Azure DevOps Server), or when it is a plain `git` source on the provider's own
host — github.com, bitbucket.org, dev.azure.com or *.visualstudio.com, over HTTPS or ssh.
Only Git sources have commits a status can be set on: the revisions of hg, cloud-folder and
manual sources are no commits of any repository there.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from orchestrator.config.notify import AzureDevOpsChannel, BitbucketChannel, Channel, GitHubChannel
from orchestrator.config.sources import RepositorySource, SourceConfig

HOSTS = {"github": ("github.com", "www.github.com"), "bitbucket": ("bitbucket.org", "www.bitbucket.org"),
         "azure-devops": ("dev.azure.com", "ssh.dev.azure.com", "vs-ssh.visualstudio.com")}
FORMATS = {"github": "owner/name", "bitbucket": "workspace/repository",
           "azure-devops": "project/repository"}
SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?!//)(?P<path>.*)$")


@dataclass(frozen=True)
class Repository:
    path: str                       # owner/name (github), workspace/slug (bitbucket), project/name (azure-devops)
    organization: str | None = None     # azure-devops only


def has_commits(source: SourceConfig) -> bool:
    return isinstance(source, RepositorySource) and source.scm == "git"


def status_repository(kind: str, repository: str | None, organization: str | None,
                      source: SourceConfig) -> Repository | None:
    """The repository a channel of this `kind` marks for an app with this source, if any."""
    named = named_by(kind, source) if has_commits(source) else None
    path = repository or (named.path if named else None)
    if path is None:
        return None
    if kind != "azure-devops":
        return Repository(path)
    organization = organization or (named.organization if named else None)
    return Repository(path, organization) if organization else None


def check_app_channels(channels: list[Channel], source: SourceConfig) -> None:
    """An app's own commit-status channels must have a commit to mark and a repository to
    mark it in (a top-level channel marks those of the apps it can, and skips the others)."""
    for n, channel in enumerate(channels):
        if not isinstance(channel, (GitHubChannel, BitbucketChannel, AzureDevOpsChannel)):
            continue
        if not has_commits(source):
            raise ValueError(f"notify.{n}: a {channel.type} commit status needs a Git source; the "
                             f"revisions of a {source.type}{_scm(source)} source are no commits")
        organization = getattr(channel, "organization", None)
        if status_repository(channel.type, channel.repository, organization, source) is None:
            if channel.repository or named_by(channel.type, source):
                raise ValueError(f"notify.{n}.organization: the source's URL names no Azure DevOps "
                                 "organization: set organization")
            raise ValueError(f"notify.{n}.repository: the source's URL names no {channel.type} "
                             f"repository: set repository ({FORMATS[channel.type]})")


def _scm(source: SourceConfig) -> str:
    return f" ({source.scm})" if source.type == "bitbucket" else ""


def named_by(kind: str, source: SourceConfig) -> Repository | None:
    """The repository of provider `kind` the source's URL names, if it names one."""
    if not isinstance(source, RepositorySource) or not source.url:
        return None
    host, parts = _host_and_path(source.url)
    if source.type != kind and not _providers_host(kind, host):
        return None
    if kind == "azure-devops":
        return _azure(host, parts)
    return Repository("/".join(parts)) if len(parts) == 2 else None


def _providers_host(kind: str, host: str) -> bool:
    return host in HOSTS.get(kind, ()) or (kind == "azure-devops" and host.endswith(".visualstudio.com"))


def _host_and_path(url: str) -> tuple[str, list[str]]:
    if "://" in url:
        parts = urlsplit(url)
        host, path = (parts.hostname or "").lower(), parts.path
    elif scp := SCP_LIKE.match(url):
        host, path = scp["host"].lower(), scp["path"]
    else:
        return "", []
    segments = [unquote(s) for s in path.split("/") if s]
    if segments and segments[-1].endswith(".git"):
        segments[-1] = segments[-1][:-len(".git")]
    return host, [s for s in segments if s]


def _azure(host: str, parts: list[str]) -> Repository | None:
    """https://dev.azure.com/ORG/PROJECT/_git/REPO, https://ORG.visualstudio.com/[COLLECTION/]
    PROJECT/_git/REPO, https://SERVER/.../COLLECTION/PROJECT/_git/REPO (a project's
    repository of the same name may leave PROJECT out), and ssh's v3/ORG/PROJECT/REPO."""
    if len(parts) == 4 and parts[0] == "v3":
        return Repository(f"{parts[2]}/{parts[3]}", parts[1])
    if "_git" not in parts or parts.index("_git") != len(parts) - 2:
        return None
    at = parts.index("_git")
    name, before = parts[at + 1], parts[:at]
    if host.endswith(".visualstudio.com"):
        return Repository(f"{before[-1] if before else name}/{name}", host.split(".")[0])
    if len(before) >= 2:
        return Repository(f"{before[-1]}/{name}", before[-2])
    return Repository(f"{name}/{name}", before[0]) if before else None
