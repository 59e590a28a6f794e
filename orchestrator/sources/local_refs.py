"""A local Git repository's branch head read from its files, as `git ls-remote PATH` answers,
without a process (a `git ls-remote` costs ~9 ms of CPU; this, tens of microseconds).

The repository is found as git's upload-pack finds it (PATH/.git, a directory or a `gitdir:`
file, else PATH itself; a linked worktree's `commondir`), then the branch is its loose ref
file, else its line in `packed-refs`; a symbolic ref is followed. Whatever this reader does
not resolve exactly as git would -- reftable, hidden refs, config includes, URL rewrites,
another owner, a broken ref, a path git would reach by another name -- raises AskGit, and
the caller runs `git ls-remote`: a different answer is never worth the saving.

GitPython's reader (`SymbolicReference._get_ref_info`) needs a `git.Repo`, which costs
~0.6 ms to build (~0.1 ms cached), finds no repository as upload-pack does and reads
reftable repositories wrongly, hence this small reader.
"""
from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable
from functools import lru_cache

from orchestrator.sources.stat_cache import StatCache

# git's SYMREF_MAXDEPTH: a longer chain is no ref to it
SYMREF_DEPTH = 5
# refs a linked worktree keeps for itself (its gitdir, not the common dir)
PER_WORKTREE = ("refs/bisect/", "refs/worktree/", "refs/rewritten/")
# names this reader vouches for; git accepts more (unicode, '@'...), which it then resolves
NAME_PART = re.compile(r"[A-Za-z0-9_+-](?:[A-Za-z0-9_.+-]*[A-Za-z0-9_+-])?")
HEX = {"sha1": 40, "sha256": 64}
# extensions git 2.39+ knows that change nothing in how refs are read
HARMLESS_EXTENSIONS = {b"noop", b"noop-v1", b"objectformat", b"preciousobjects", b"partialclone"}
# config that changes what upload-pack advertises, or that may hold such settings elsewhere
REPOSITORY_CONFIG_SIGNS = (b"hiderefs", b"include", b"refstorage", b"worktreeconfig")
# the same, and what makes the client reach another repository or refuse file://
USER_CONFIG_SIGNS = (b"hiderefs", b"include", b"insteadof", b"allow")
# environment that upload-pack or the client obeys (the local transport clears the rest)
ASK_GIT_ENVIRONMENT = (b"GIT_NAMESPACE", b"GIT_DIR", b"GIT_CONFIG_PARAMETERS", b"GIT_CONFIG_COUNT",
                       b"GIT_ALLOW_PROTOCOL")
# anywhere, as git takes "[core] repositoryformatversion = 1" on one line too
FORMAT_VERSION = re.compile(rb"repositoryformatversion[ \t]*=[ \t]*(\S*)")
EXTENSIONS = re.compile(rb"^[ \t]*\[extensions\]([^\[]*)", re.M)
CONFIG_KEY = re.compile(rb"^[ \t]*([a-z0-9-]+)[ \t]*(?:=[ \t]*(\S*))?", re.M)
OBJECT_ID = {length: re.compile(rb"[0-9a-f]{%d}" % length) for length in HEX.values()}
PACKED_REFS = {length: re.compile(rb"(?:# pack-refs with:[^\n]*\n)?(?:[0-9a-f]{%d} [!-~\x80-\xff]+\n"
                                  rb"(?:\^[0-9a-f]{%d}\n)?)*" % (length, length))
               for length in HEX.values()}
# git's isspace(), which may follow the id in a loose ref
SPACE_BYTES = tuple(bytes([c]) for c in b" \t\n\r")
_files = StatCache()
# how long a look at the system and global config holds, and the last look: (when, what it
# found that makes git answer otherwise)
USER_CONFIG_FOR = 1.0
_user_config_seen: tuple[float, str | None] = (float("-inf"), None)


class AskGit(Exception):
    """What these files say is for git itself to interpret (the message says why)."""


def local_head(url: str, branch: str, now: Callable[[], float] = time.monotonic) -> str | None:
    """The id `refs/heads/{branch}` points at in the repository at `url` (a path or a
    file:/// URL), None when it has no such branch; AskGit whenever git might answer
    otherwise, or reach the repository another way."""
    if (setting := _user_environment()[0]) is not None:
        raise AskGit(f"{setting} is set")
    ref = f"refs/heads/{branch}"
    if not _plain(ref):
        raise AskGit(f"branch name {branch!r}")
    try:
        common = _repository(_local_path(url))
        length = _hex_length(_files.read(f"{common}/config") or b"")
        _check_user_config(now)
        return _resolve(common, ref, length, SYMREF_DEPTH)
    except OSError as exc:
        raise AskGit(f"{exc.strerror or exc}: {exc.filename}") from None


def local_repository(url: str) -> str:
    """The common dir of the repository at `url` (a path or a file:/// URL), found as
    upload-pack finds it and owned by this user; AskGit when it is not local or not one this
    reader is sure of."""
    try:
        return _repository(_local_path(url))
    except OSError as exc:
        raise AskGit(f"{exc.strerror or exc}: {exc.filename}") from None


def vouched_config(common: str) -> bytes:
    """The repository's config, lower-cased, when its format and extensions are ones this
    reader knows (AskGit otherwise)."""
    try:
        config = _files.read(f"{common}/config") or b""
    except OSError as exc:
        raise AskGit(f"{exc.strerror or exc}: {exc.filename}") from None
    _hex_length(config)
    return config.lower()


def _local_path(url: str) -> str:
    """The path git's local transport opens for `url` (git's url_is_local_not_ssh)."""
    if url.startswith("file://"):
        path = url.removeprefix("file://")
        if not path.startswith("/") or "%" in path:
            raise AskGit("a file:// URL with a host or %-escapes")
        return path
    colon, slash = url.find(":"), url.find("/")
    if "://" in url or (colon >= 0 and not 0 <= slash < colon):
        raise AskGit("not a local path")
    if url.startswith("~"):
        raise AskGit("a path from ~")
    return url


def _repository(path: str) -> str:
    """The common dir (shared refs, objects, config), found as upload-pack's enter_repo
    finds it; every part owned by this user, as git requires (safe.directory is git's to
    weigh)."""
    owners = [os.stat(path)]
    if not stat.S_ISDIR(owners[0].st_mode):
        raise AskGit("not a directory (git would take a file for a bundle)")
    dot_git = f"{path}/.git"
    try:
        owners.append(os.stat(dot_git))
    except FileNotFoundError:
        git_dir = path
    else:
        git_dir = dot_git if stat.S_ISDIR(owners[-1].st_mode) else _gitfile(dot_git)
        if git_dir != dot_git:
            owners.append(os.stat(git_dir))
    common = _common_dir(git_dir)
    if common != git_dir:
        owners.append(os.stat(common))
    if any(st.st_uid != os.geteuid() for st in owners):
        raise AskGit("owned by another user")
    return common


def _gitfile(dot_git: str) -> str:
    """The directory a `.git` file names (worktrees, submodules), relative to its folder."""
    text = (_files.read(dot_git) or b"").rstrip(b"\r\n")
    if not text.startswith(b"gitdir: "):
        raise AskGit(f"{dot_git} is not a gitdir: file")
    return os.path.join(os.path.dirname(dot_git), os.fsdecode(text.removeprefix(b"gitdir: ")))


def _common_dir(git_dir: str) -> str:
    """Where the repository's shared refs, objects and config are (git's is_git_directory
    checks, which pass or send us to git)."""
    head = f"{git_dir}/HEAD"
    content = _files.read(head, follow=False) or b""
    if not (content.startswith(b"ref:") and content[4:].lstrip().startswith(b"refs/")
            or re.match(rb"[0-9a-f]{40}", content)):
        raise AskGit(f"{head} holds neither a ref nor an id")
    link = (_files.read(f"{git_dir}/commondir") or b"").rstrip(b"\r\n")
    common = os.path.join(git_dir, os.fsdecode(link)) if link else git_dir
    for folder in ("objects", "refs"):
        if not stat.S_ISDIR(os.stat(f"{common}/{folder}").st_mode):
            raise AskGit(f"{common} has no {folder} folder")
    return common


@lru_cache(maxsize=256)
def _hex_length(config: bytes) -> int:
    """The length of an object id in this repository; AskGit for a format, an extension
    (reftable, worktreeConfig...) or a setting this reader does not follow."""
    text = config.lower()
    if sign := next((s for s in REPOSITORY_CONFIG_SIGNS if s in text), None):
        raise AskGit(f"its config mentions {sign.decode()}")
    if set(FORMAT_VERSION.findall(text)) - {b"0", b"1"}:
        raise AskGit("a repository format version other than 0 or 1")
    settings = dict(CONFIG_KEY.findall(b"".join(EXTENSIONS.findall(text))))
    if unknown := set(settings) - HARMLESS_EXTENSIONS:
        raise AskGit(f"extensions {b', '.join(sorted(unknown)).decode()}")
    object_format = settings.get(b"objectformat", b"sha1").decode()
    if object_format not in HEX:
        raise AskGit(f"object format {object_format}")
    return HEX[object_format]


def _check_user_config(now: Callable[[], float]) -> None:
    """AskGit if the system or global config may hide refs or rewrite URLs. Looked at once
    a second at most, for every repository: their stats cost a third of a check, and a
    setting seen up to a second late is as if the check had run that much earlier."""
    global _user_config_seen
    if (at := now()) - _user_config_seen[0] >= USER_CONFIG_FOR:
        _user_config_seen = (at, _user_config_sign())
    if found := _user_config_seen[1]:
        raise AskGit(found)


def _user_config_sign() -> str | None:
    for path in _user_environment()[1]:
        text = _files.read(path)
        if text is not None and (sign := _sign_in(text)):
            return f"{path} mentions {sign}"
    return None


@lru_cache(maxsize=16)
def _sign_in(text: bytes) -> str | None:
    lowered = text.lower()
    return next((s.decode() for s in USER_CONFIG_SIGNS if s in lowered), None)


@lru_cache(maxsize=1)
def _user_environment() -> tuple[str | None, tuple[str, ...]]:
    """(a variable that makes git answer otherwise, if one is set; the system and global
    config files git reads -- a `git` built for another prefix than /usr reads another
    system file, not looked at here), read once: a dozen lookups cost as much as the rest
    of a check. forget() reads them again."""
    env, home = os.environb, os.environb.get(b"HOME")
    setting = next((name.decode() for name in ASK_GIT_ENVIRONMENT if env.get(name) is not None), None)
    nosystem = env.get(b"GIT_CONFIG_NOSYSTEM", b"").lower() in (b"1", b"true", b"yes", b"on")
    files = [] if nosystem else [env.get(b"GIT_CONFIG_SYSTEM") or b"/etc/gitconfig"]
    if (given := env.get(b"GIT_CONFIG_GLOBAL")) is not None:
        files.append(given)
    else:
        xdg = env.get(b"XDG_CONFIG_HOME") or (home and home + b"/.config")
        files += ([xdg + b"/git/config"] if xdg else []) + ([home + b"/.gitconfig"] if home else [])
    return setting, tuple(map(os.fsdecode, files))


def forget() -> None:
    """Read the environment, and every file, again at the next check (after a test changed
    them)."""
    global _user_config_seen
    _user_environment.cache_clear()
    _user_config_seen = (float("-inf"), None)
    _files.clear()


def _resolve(common: str, ref: str, length: int, depth: int) -> str | None:
    """The loose ref if there is one (a folder in its place is none), else the packed one."""
    path = f"{common}/{ref}"
    try:
        content = _files.read(path, follow=False)    # a link (git's own kind of symref): ask git
    except IsADirectoryError:
        content = None
    if content is None:
        return _packed(common, ref, length)
    if content.startswith(b"ref:"):
        return _follow(common, content[4:].strip().decode(errors="replace"), length, depth)
    oid, rest = content[:length], content[length:]
    if not OBJECT_ID[length].fullmatch(oid) or rest[:1] not in (b"", *SPACE_BYTES) \
            or oid == b"0" * length:    # git lists a broken or null ref as 000...: ask it
        raise AskGit(f"{path} is not a valid ref")
    return oid.decode()


def _follow(common: str, target: str, length: int, depth: int) -> str:
    """A symbolic ref's target, which must exist (git lists no dangling one)."""
    if depth <= 0 or not _plain(target) or target.startswith(PER_WORKTREE):
        raise AskGit(f"symbolic ref to {target!r}")
    found = _resolve(common, target, length, depth - 1)
    if found is None:
        raise AskGit(f"symbolic ref to {target!r}, which does not exist")
    return found


def _packed(common: str, ref: str, length: int) -> str | None:
    """The ref's line in packed-refs ("<id> <name>", a "^<id>" line after it peels a tag)."""
    path = f"{common}/packed-refs"
    data = _files.read(path) or b""
    if not PACKED_REFS[length].fullmatch(data):
        raise AskGit(f"{path} is not as git writes it")
    needle = f" {ref}\n".encode()
    at = data.find(needle)
    if at < 0:
        return None
    start = at - length
    if data.find(needle, at + 1) >= 0 or (start and data[start - 1:start] != b"\n"):
        raise AskGit(f"{ref} is in packed-refs twice or not at a line's start")
    return data[start:at].decode()


@lru_cache(maxsize=1024)
def _plain(ref: str) -> bool:
    """A ref name made of plain parts: no '..', no part starting or ending with '.', none
    ending '.lock' (so also no way out of the repository's folder)."""
    return ref.startswith("refs/") and all(
        NAME_PART.fullmatch(part) and not part.endswith(".lock") for part in ref.split("/"))
