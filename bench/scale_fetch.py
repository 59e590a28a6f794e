"""A Git source's snapshot step for a one-file change at 1k, 20k and 50k files (issue 16):
Sluice's (GitSource.fetch: the fetch into the mirror, the diff, the changed file written;
in brackets its git fetch alone, as GitSource runs it, into a mirror in the same state)
beside the fetch Sluice ran before, `git fetch --depth=1` into a third such mirror, measured
in the same run on the same repositories.

    .venv/bin/python bench/scale_fetch.py [--sizes 1000,20000,50000] [--runs 7]

The repository is a local path, as bench/scale_tree.py deploys from. Both mirrors start as
the collection leaves one (the head alone, shallow, in one pack). The former fetch cost the
tree twice over: upload-pack's shallow packing walked it, and the client's connectivity
check (`rev-list --objects ... --not --all`) walked the mirror's heads' trees.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import GIT_ENV, git, make_repo, ms, results_table, verdict
from rich.console import Console

from orchestrator.config.sources import GitSourceConfig
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.snapshots import Base, Snapshot, SnapshotStore
from orchestrator.sources.git import GitSource
from orchestrator.sources.git_cache import PROMISED_FETCH, prune
from orchestrator.sources.vcs_process import idle_clone

BRANCH = "refs/heads/master"


def rel_path(i: int) -> str:
    return f"d{i // 100:04d}/f{i % 100:03d}.bin"


def former_mirror(repo: Path, mirror: Path) -> None:
    """A mirror as the collection leaves one, fetched into as Sluice did before."""
    git(repo.parent, "clone", "--bare", "--quiet", "--no-tags", "--single-branch", "--depth=1",
        "--config=fetch.unpackLimit=1", "--config=transfer.fsckObjects=true", "--config=gc.auto=0",
        repo.as_uri(), str(mirror))
    git(mirror, "remote", "set-url", "origin", str(repo))


FORMER_FETCH = ["git", "fetch", "--quiet", "--no-tags", "--depth=1", "origin", f"+{BRANCH}:{BRANCH}"]
# the fetch GitSource runs now for a local branch that moved on (git.py's _fetch_into)
FETCH_NOW = ["git", *(arg for setting in PROMISED_FETCH for arg in ("-c", setting)), "fetch", "--quiet", "--no-tags",
             "--no-auto-maintenance", "origin", f"+{BRANCH}:{BRANCH}"]


def timed_fetch(mirror: Path, argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, cwd=mirror, check=True, capture_output=True, env={**os.environ, **GIT_ENV})
    return time.perf_counter() - t0


def measure_size(base: Path, n: int, runs: int) -> dict[str, float]:
    repo = base / f"repo-{n}"
    head = make_repo(repo, {rel_path(i): os.urandom(1024) for i in range(n)})
    source = GitSource(GitSourceConfig(type="git", url=str(repo), branch="master"), base / f"cache-{n}")
    store = SnapshotStore(base / f"store-{n}")
    built: tuple[str, Snapshot] = (head, snapshot(source, store, head, None))
    with idle_clone(source.mirror):
        prune(source.mirror, {"master"}, {head})
    before, now = base / f"former-{n}.git", base / f"now-{n}.git"
    former_mirror(repo, before)
    former_mirror(repo, now)
    steps, formers, fetches = [], [], []
    for i in range(runs + 1):           # the first of each: warming the page cache
        (repo / rel_path((i * 7919 + 1) % n)).write_bytes(os.urandom(1024))
        git(repo, "commit", "--quiet", "-am", f"change {i}")
        revision = git(repo, "rev-parse", "HEAD")
        t0 = time.perf_counter()
        built = (revision, snapshot(source, store, revision, built))
        steps.append(time.perf_counter() - t0)
        formers.append(timed_fetch(before, FORMER_FETCH))
        fetches.append(timed_fetch(now, FETCH_NOW))
    return {"sluice": statistics.median(steps[1:]), "former": statistics.median(formers[1:]),
            "fetch": statistics.median(fetches[1:])}


def snapshot(source: GitSource, store: SnapshotStore, revision: str,
             base: tuple[str, Snapshot] | None) -> Snapshot:
    writer = store.builder(Base(base[0], base[1].manifest) if base else None)
    source.fetch(revision, writer)
    return writer.seal()


def measure(args) -> list[tuple[str, str, str, str]]:
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="sluice-scale-fetch-"))
    try:
        figures = {n: measure_size(base, n, args.runs) for n in sizes}
    finally:
        remove_tree(base)
    rows = [(f"git one-file change, {n} files: snapshot step (its fetch)",
             f"{ms(f['sluice'])} ({ms(f['fetch'])})", f"git fetch --depth=1 (before) {ms(f['former'])}", "")
            for n, f in figures.items()]
    small, big = figures[min(sizes)], figures[max(sizes)]
    ratio, former = big["sluice"] / small["sluice"], big["former"] / small["former"]
    rows.append((f"git snapshot step (its fetch), {max(sizes)} / {min(sizes)} files",
                 f"{ratio:.2f}x ({big['fetch'] / small['fetch']:.2f}x)", f"before {former:.2f}x",
                 f"<= 1.5x: {verdict(ratio <= 1.5)}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000,50000")
    parser.add_argument("--runs", type=int, default=7)
    rows = measure(parser.parse_args())
    Console(width=160).print(results_table("Git snapshot step by tree size (medians)",
                                           ("measure", "sluice", "baseline", "target"), rows))


if __name__ == "__main__":
    main()
