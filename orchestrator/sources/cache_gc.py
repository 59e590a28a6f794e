"""The source caches' share of the garbage collection: the mirror or clone of a source no
configured app uses any more is removed (a local Git source read in place uses none); a Git
mirror is cut down to the tracked branches' heads and the revisions kept releases were built
from (git_cache.py). A Mercurial clone keeps its whole history: hg has no shallow clones."""
from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import git

from orchestrator.config.settings import AppConfig
from orchestrator.core.errors import SluiceError
from orchestrator.sources import source_for
from orchestrator.sources.git import GitSource
from orchestrator.sources.git_cache import prune
from orchestrator.sources.hg import HgSource
from orchestrator.sources.vcs_process import idle_clone

log = logging.getLogger("sluice.gc")


@dataclass
class Needs:
    """What the apps on one Git mirror may still read from it."""
    branches: set[str] = field(default_factory=set)
    revisions: set[str] = field(default_factory=set)


def collect_caches(apps: Mapping[str, AppConfig], data_dir: Path,
                   kept: Mapping[str, set[str]]) -> tuple[list[Path], list[Path]]:
    """Remove the caches under {data_dir}/cache/{git,hg} no app in `apps` uses and prune the
    Git mirrors the others use, keeping the revisions `kept` names for each app. A cache in
    use by a clone or fetch is left for the next collection. Returns (removed, pruned)."""
    mirrors: dict[Path, Needs] = {}
    clones: set[Path] = set()
    for name, app in apps.items():
        source = source_for(app, data_dir)
        if isinstance(source, GitSource) and not source.reads_in_place():   # else no mirror to keep
            needs = mirrors.setdefault(source.mirror, Needs())
            needs.branches.add(source.config.branch)
            needs.revisions |= kept.get(name, set())
        elif isinstance(source, HgSource):
            clones.add(source.clone)
    cache = data_dir / "cache"
    removed = [*_remove_unused(cache / "git", ".git", set(mirrors)),
               *_remove_unused(cache / "hg", ".hg", clones)]
    pruned = [mirror for mirror, needs in mirrors.items() if _prune(mirror, needs)]
    return removed, pruned


def _remove_unused(folder: Path, suffix: str, used: set[Path]) -> list[Path]:
    """Their lock files stay: a process may have one open, waiting to take it."""
    removed = []
    for entry in sorted(folder.glob("*" + suffix)) if folder.is_dir() else []:
        if entry in used:
            continue
        with idle_clone(entry) as mine:
            if mine:
                shutil.rmtree(entry, ignore_errors=True)
                shutil.rmtree(entry.with_suffix(".cloning"), ignore_errors=True)
                log.info("removed %s: no configured app uses that source any more", entry)
                removed.append(entry)
    return removed


def _prune(mirror: Path, needs: Needs) -> bool:
    if not (mirror / "HEAD").exists():        # not cloned yet, or a clone was killed
        return False
    with idle_clone(mirror) as mine:
        if not mine:
            return False
        try:
            return prune(mirror, needs.branches, needs.revisions)
        except (SluiceError, git.GitCommandError, OSError) as exc:
            log.warning("pruning %s failed (the next collection tries again): %s", mirror, exc)
            return False
