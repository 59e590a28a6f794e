"""The checks a snapshot's tree passes before anything is written from it: no name that
could escape or corrupt a release, no entry inside a file or link, no link leaving the tree
or looping (`check_tree`); of a snapshot derived from a checked one, only what changed
(`check_changes`)."""
from __future__ import annotations

from collections.abc import Iterable

from orchestrator.core.errors import InvalidAppLayout
from orchestrator.releases.manifests import Manifest

MAX_LINK_HOPS = 40          # as the kernel's limit on symlinks in one lookup (ELOOP)


def safe_path(path: str) -> str:
    """A release-relative path, or InvalidAppLayout if it could escape or corrupt the tree."""
    if "\0" in path or path.startswith("/") or "\\" in path:
        raise InvalidAppLayout(f"unsafe file name in source: {path!r}")
    if any(p in ("", ".", "..") for p in path.split("/")):
        raise InvalidAppLayout(f"unsafe file name in source: {path!r}")
    return path


def implied_dirs(paths: Iterable[str]) -> set[str]:
    """Every folder the given release-relative paths need, at any depth."""
    dirs: set[str] = set()
    for path in paths:
        d = path.rpartition("/")[0]
        while d and d not in dirs:
            dirs.add(d)
            d = d.rpartition("/")[0]
    return dirs


def check_changes(base: Manifest, manifest: Manifest, changed: set[str]) -> None:
    """The tree checks of `manifest`, which differs from `base` (checked already) only at the
    `changed` paths: an entry inside a file or link, a file where a folder is, a link leaving
    the tree. Only the changed entries are looked at, and the links when one of them changed."""
    folders = manifest.folders()
    for path in changed:
        if path not in manifest.files and path not in manifest.links:
            continue
        if path in folders:
            inside = min(p for p in (*manifest.files, *manifest.links) if p.startswith(path + "/"))
            raise InvalidAppLayout(f"{inside!r} collides with the file {path!r}")
        parent = path.rpartition("/")[0]
        while parent:
            if parent in manifest.files or parent in manifest.links:
                raise InvalidAppLayout(f"{path!r} collides with the file {parent!r}")
            parent = parent.rpartition("/")[0]
    if any(p in manifest.links or p in base.links for p in changed):
        _check_tree(set(), manifest.links)


def check_tree(manifest: Manifest) -> None:
    """The tree checks of a manifest made without a builder (a build's output on its base)."""
    _check_tree(manifest.files.keys() | manifest.links.keys(), manifest.links)


def _check_tree(paths: set[str], links: dict[str, str]) -> None:
    """No entry may sit inside a file or link, and no link may point outside the tree."""
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in paths:
                raise InvalidAppLayout(f"{path!r} collides with the file {parent!r}")
            parent = parent.rpartition("/")[0]
    for path, target in links.items():
        if not target:          # no link can be made of it: a failure, not a retry
            raise InvalidAppLayout(f"symlink {path!r} has an empty target")
        hops = [MAX_LINK_HOPS]
        if _resolve(path.split("/")[:-1], target, links, hops) is None:
            if hops[0] < 0:
                raise InvalidAppLayout(f"symlink {path!r} is in a loop of links (more than "
                                       f"{MAX_LINK_HOPS} in a row): {target!r}")
            raise InvalidAppLayout(f"symlink {path!r} points outside the app: {target!r}")


def _resolve(base: list[str], target: str, links: dict[str, str], hops: list[int]) -> list[str] | None:
    """Where `target`, read in folder `base`, leads — as the kernel walks it, following the
    tree's own links component by component (text alone can hide an escape behind a link) —
    or None if it leaves the tree, is absolute, or loops."""
    if target.startswith("/"):
        return None
    parts = list(base)
    for name in target.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(name)
        link = links.get("/".join(parts))
        if link is not None:
            hops[0] -= 1
            resolved = None if hops[0] < 0 else _resolve(parts[:-1], link, links, hops)
            if resolved is None:
                return None
            parts = resolved
    return parts
