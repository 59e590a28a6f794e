"""Mercurial repositories: head checks over the HTTP wire protocol in-process (or `hg
identify` for ssh:// and local paths), a cached clone read and pulled into through a command
server kept per clone (hg_server.py), file node ids as aliases so files already in the store
are neither read nor hashed again."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

from orchestrator.config.sources import RepositorySource
from orchestrator.core.errors import (
    AuthenticationFailed,
    PermanentError,
    RevisionNotFound,
    SluiceError,
    TransientError,
)
from orchestrator.core.urls import sanitize_url
from orchestrator.sources.base import Change, SnapshotWriter, strip_prefix
from orchestrator.sources.hg_server import Client, servers
from orchestrator.sources.lean_http import HttpError, Pool
from orchestrator.sources.vcs_process import credentials, failure, locked_clone, run, ssh_command

ALIAS_KIND = "hg-filenode"
NODE = re.compile(r"^[0-9a-f]{40}$")
HEAD_TIMEOUT = 30.0
AUTH_REFUSED = ("authorization failed",)
_pool = Pool(timeout=HEAD_TIMEOUT, headers={"Accept": "application/mercurial-0.1"})


def hg_executable() -> str:
    beside = Path(sys.executable).parent / "hg"        # the venv's own, a declared dependency
    return str(beside) if beside.exists() else (shutil.which("hg") or "hg")


class HgSource:
    def __init__(self, config: RepositorySource, cache_dir: Path):
        self.config = config
        self.where = sanitize_url(config.url)
        self.clone = Path(cache_dir) / (hashlib.sha256(config.url.encode()).hexdigest()[:24] + ".hg")

    def describe(self) -> str:
        return self.config.describe()

    def latest(self, cursor: str | None) -> Change | None:
        node = self.head()
        return None if node == cursor else Change(revision=node, cursor=node)

    def head(self) -> str:
        if self.config.url.startswith(("http://", "https://")):
            return self._lookup_over_http()
        proc = self._run(["identify", "-r", self.config.branch, "-T", "{node}\n", "--",
                          self.config.url], timeout=HEAD_TIMEOUT)
        node = proc.stdout.strip().splitlines()[-1:]
        if proc.returncode == 0 and node and NODE.match(node[0]):
            return node[0]
        if "unknown revision" in proc.stderr:
            raise self._no_branch()
        raise self._failure("identify", proc.stderr)

    def _lookup_over_http(self) -> str:
        """The wire protocol's `lookup` command: one GET, answered `1 <node>` or `0 <error>`."""
        auth = credentials(self.config)
        separator = "&" if "?" in self.config.url else "?"
        query = urlencode({"cmd": "lookup", "key": self.config.branch})
        try:
            response = _pool.request("GET", f"{self.config.url}{separator}{query}", auth=auth)
        except HttpError as exc:
            raise TransientError(f"hg lookup {self.where} failed: {exc}") from None
        status = response.status
        if status in (401, 403):
            raise AuthenticationFailed(f"hg lookup {self.where}: HTTP {status}, check the credentials")
        if status == 429 or status >= 500:
            raise TransientError(f"hg lookup {self.where} failed: HTTP {status}")
        if status != 200:
            raise PermanentError(f"hg lookup {self.where} failed: HTTP {status}")
        ok, _, answer = response.body.decode(errors="replace").strip().partition(" ")
        if ok == "1" and NODE.match(answer):
            return answer
        if ok == "0":
            raise self._no_branch()
        raise TransientError(f"hg lookup {self.where}: not a Mercurial answer")

    def fetch(self, revision: str, into: SnapshotWriter) -> None:
        base_revision = into.base_revision
        wanted = {revision} if base_revision is None else {revision, base_revision}
        with self._locked_clone():
            present = self._present(wanted)
            if revision not in present:
                self._hg(["pull", "--quiet", "--", self.config.url], "pull")
            into.describe_commit(*self._commit(revision))      # RevisionNotFound when not pulled
            base = into.base_revision if into.base_revision in present else None
            self._write_tree(revision, base, into)

    def _write_tree(self, revision: str, base: str | None, into: SnapshotWriter) -> None:
        changed = self._changes_since(base, revision) if base else None
        if changed is None:
            into.drop_base()
            entries = self._manifest(revision)
            if not entries and self.config.path:
                raise RevisionNotFound(f"folder {self.config.path!r} does not exist at "
                                       f"revision {revision[:12]}")
            self._add(revision, entries, into)
            return
        for path in (p for p, full in changed.items() if full is None):
            into.remove(path)           # gone at `revision`
        # only the changed paths are listed: a one-file change costs one file's work
        self._add(revision, self._flags(revision, [f for f in changed.values() if f]), into)

    def _add(self, revision: str, wanted: dict[str, tuple[str | None, str, str]],
             into: SnapshotWriter) -> None:
        """`wanted`: path -> (file node when listed, flag, full path); files whose node the
        store knows are neither read nor hashed again."""
        nodes = {node for node, flag, _ in wanted.values() if node and flag != "@"}
        known = into.known(ALIAS_KIND, nodes) if nodes else {}
        unread = [full for node, flag, full in wanted.values() if flag == "@" or node not in known]
        with self._cat(revision, unread) as files:
            for path, (node, flag, full) in wanted.items():
                if flag == "@":          # a symlink's content is its target
                    into.add_symlink(path, (files / full).read_bytes().decode())
                elif node is not None and node in known:
                    into.add_known(path, known[node], executable=flag == "*")
                else:
                    with open(files / full, "rb") as stream:
                        into.add_stream(path, stream, executable=flag == "*",
                                        alias=(ALIAS_KIND, node) if node else None)

    def _manifest(self, revision: str) -> dict[str, tuple[str | None, str, str]]:
        """path relative to the subfolder -> (file node, flag: '' | '*' exec | '@' link, full path)."""
        out = self._hg(["manifest", "-r", revision, "-T", "{hash}{type}\\0{path}\\0"], "manifest")
        fields = out.split("\0")
        entries: dict[str, tuple[str | None, str, str]] = {}
        for meta, full in zip(fields[0::2], fields[1::2]):
            relative = strip_prefix(full, self.config.path)
            if relative:
                entries[relative] = (meta[:40], meta[40:], full)
        return entries

    def _flags(self, revision: str, paths: list[str]) -> dict[str, tuple[str | None, str, str]]:
        """Those full paths at `revision`, as _manifest lists them but without their nodes
        (`hg files` does not tell them): its flags are `hg manifest`'s ('l' there is '@')."""
        if not paths:
            return {}
        with self._listfile(paths) as listing:
            out = self._hg(["files", "-r", revision, "-T", "{flags}\\0{path}\\0", f"listfile0:{listing}"],
                           "files")
        fields = out.split("\0")
        return {relative: (None, "@" if "l" in flags else "*" if "x" in flags else "", full)
                for flags, full in zip(fields[0::2], fields[1::2])
                if (relative := strip_prefix(full, self.config.path))}

    def _commit(self, revision: str) -> tuple[str, str, str]:
        """The changeset's author (name and email, as Mercurial splits its one field) and
        description; RevisionNotFound when the clone does not hold it."""
        if not NODE.match(revision):
            raise RevisionNotFound(f"revision {revision} not found in {self.where}")
        status, out, _ = self._command(["log", "-r", f"present({revision})", "-T",
                                        "{node}\\0{author|person}\\0{author|email}\\0{desc}"])
        node, person, email, message = (out.split("\0", 3) + ["", "", ""])[:4]
        if status != 0 or node != revision:
            raise RevisionNotFound(f"revision {revision} not found in {self.where}")
        return person, email, message.strip()

    def _changes_since(self, base: str, revision: str) -> dict[str, str | None] | None:
        """Paths (relative to the subfolder) added, modified or removed since the base
        revision, each with its full path (None: removed), or None when every file must be
        listed because the ignore rules changed."""
        scope = [f"path:{self.config.path}"] if self.config.path else []
        out = self._hg(["status", "--rev", base, "--rev", revision, "-amr", "-0", *scope], "status")
        changed = {relative: None if line[0] == "R" else line[2:] for line in out.split("\0") if line
                   if (relative := strip_prefix(line[2:], self.config.path)) is not None}
        return None if ".funcignore" in changed else changed

    @contextmanager
    def _listfile(self, paths: list[str]) -> Iterator[Path]:
        """The paths in a file for `listfile0:`, so no command line gets too long."""
        with tempfile.NamedTemporaryFile(dir=self.clone.parent, prefix="list-") as listing:
            listing.write(b"".join(f"path:{p}\0".encode("utf-8", "surrogateescape") for p in paths))
            listing.flush()
            yield Path(listing.name)

    @contextmanager
    def _cat(self, revision: str, paths: list[str]):
        """All of `paths` written under a temporary folder by one `hg cat`, not one per file."""
        with tempfile.TemporaryDirectory(dir=self.clone.parent, prefix="cat-") as tmp:
            if paths:
                with self._listfile(paths) as listing:
                    self._hg(["cat", "-r", revision, "-o", f"{tmp}/out/%p", f"listfile0:{listing}"], "cat")
            yield Path(tmp) / "out"

    def _present(self, revisions: set[str]) -> set[str]:
        """Which of these nodes the clone holds, in one hg run. Only full hex nodes are
        asked about, so nothing from an event can be read as a revset expression."""
        nodes = sorted(r for r in revisions if NODE.match(r))
        args = [arg for node in nodes for arg in ("-r", f"present({node})")]
        status, out, _ = self._command(["log", *args, "-T", "{node}\n"]) if nodes else (1, "", "")
        return set(out.split()) & set(nodes) if status == 0 else set()

    def _locked_clone(self):
        return locked_clone(self.clone, self.clone / ".hg" / "requires", self._clone_into)

    def _clone_into(self, into: Path) -> None:
        proc = self._run(["clone", "-U", "--quiet", "--", self.config.url, str(into)], cwd=self.clone.parent)
        if proc.returncode != 0:
            raise self._failure("clone", proc.stderr)

    def _hg(self, args: list[str], command: str) -> str:
        status, out, err = self._command(args)
        if status != 0:
            raise self._failure(command, err)
        return out

    def _command(self, args: list[str]) -> tuple[int, str, str]:
        """`hg ARGS` in the clone, by its command server: (exit status, stdout, stderr)."""
        settings = self._hgrc()
        # a clone made again (another inode) or other settings: another server
        key = (str(self.clone), (self.clone / ".hg").stat().st_ino,
               hashlib.sha256(settings.encode()).digest())
        reply = servers.run(key, lambda: self._start_server(settings),
                            [arg.encode("utf-8", "surrogateescape") for arg in args],
                            label=f"hg {args[0]} {self.where}")
        return reply.status, _text(reply.out), _text(reply.err)

    def _start_server(self, settings: str) -> Client:
        """A command server for the clone; it reads the settings file once, as it starts."""
        with self._hgrc_file(settings) as hgrc:
            client = Client(str(self.clone), hg_executable(), {"HGRCPATH": hgrc})
            return client.open()

    def _run(self, args: list[str], cwd: Path | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess:
        """hg with no user or system config (HGRCPATH is only our own file, holding the
        credentials so they never appear on a command line) and plain, stable output."""
        with self._hgrc_file(self._hgrc()) as hgrc:
            env = {**os.environ, "HGPLAIN": "1", "HGRCPATH": hgrc, "HGENCODING": "utf-8"}
            return run([hg_executable(), *args], cwd=cwd, env=env, timeout=timeout,
                       label=f"hg {args[0]} {self.where}")

    @staticmethod
    @contextmanager
    def _hgrc_file(settings: str) -> Iterator[str]:
        with tempfile.NamedTemporaryFile("w", suffix=".hgrc") as hgrc:  # created 0600
            hgrc.write(settings)
            hgrc.flush()
            yield hgrc.name

    def _hgrc(self) -> str:
        lines = ["[ui]", "interactive = false"]
        if self.config.ssh_key:
            lines.append(f"ssh = {ssh_command(self.config.ssh_key)}")
        if auth := credentials(self.config):
            lines += ["[auth]", f"sluice.prefix = {self.where}"]
            lines += [f"sluice.{key} = {value}" for key, value in zip(("username", "password"), auth)
                      if value]
        return "\n".join(lines) + "\n"

    def _no_branch(self) -> RevisionNotFound:
        return RevisionNotFound(f"branch {self.config.branch!r} not found in {self.where}")

    def _failure(self, command: str, stderr: str) -> SluiceError:
        return failure(f"hg {command} {self.where}", stderr, AUTH_REFUSED)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")
