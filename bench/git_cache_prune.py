"""Git cache benchmark: the disk a source's mirror takes after the tracked branch deleted a
big file, before and after the garbage collection prunes it, beside a fresh
`git clone --depth 1` of the same branch (the least any copy of the head takes) and a
`git clone --mirror` (what Sluice kept for ever before).

    .venv/bin/python bench/git_cache_prune.py [--big-mb 200] [--files 2000]

1. A repository: --files small files and one --big-mb file of random bytes; the mirror
   fetches it (GitSource.fetch, as a deployment does) over file:// (a local path would be
   copied whole by git's local clone, unlike a remote).
2. The big file deleted and committed; the mirror fetches the new head (the first revision
   stays pinned: a kept release was built from it).
3. The collection (cache_gc.collect_caches) once no kept release needs the first revision.
Sizes are `du -sb`; the baselines are measured in the same run on the same disk.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import git, make_repo, results_table, write_config
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.releases.snapshots import Base, SnapshotStore
from orchestrator.sources import source_for
from orchestrator.sources.cache_gc import collect_caches
from orchestrator.sources.git import GitSource

console = Console(width=120)


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True,
                              text=True).stdout.split()[0])


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-git-cache-") as tmp:
        base = Path(tmp)
        repo = base / "repo"
        files = {f"static/{i}.txt": f"file {i}\n".encode() for i in range(args.files)}
        first = make_repo(repo, {**files, "big.bin": os.urandom(args.big_mb << 20)})
        url = repo.as_uri()
        config = write_config(base, "redis://unused", {"site": {
            "type": "git", "url": url, "branch": "master", "poll_interval": "0"}})
        apps = load_config(config, env={}).apps
        data_dir = base / "data"
        source = source_for(apps["site"], data_dir)
        assert isinstance(source, GitSource)
        store = SnapshotStore(data_dir / "store")
        live = deploy(source, store, first, None)
        with_big = du(source.mirror)
        git(repo, "rm", "--quiet", "big.bin")
        git(repo, "commit", "--quiet", "-m", "the big file deleted")
        head = git(repo, "rev-parse", "HEAD")
        deploy(source, store, head, Base(first, live))
        deleted = du(source.mirror)
        started = time.perf_counter()
        collect_caches(apps, data_dir, {"site": {head}})
        seconds = time.perf_counter() - started
        pruned = du(source.mirror)
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", "master", url,
                        str(base / "shallow")], check=True)
        subprocess.run(["git", "clone", "--quiet", "--mirror", url, str(base / "whole.git")], check=True)
        console.print(results_table(
            f"Git cache after a {args.big_mb} MB file was deleted ({args.files} other files)",
            ("measure", "size"),
            [("mirror, the big file at the head", mb(with_big)),
             ("mirror, the big file deleted, before the collection", mb(deleted)),
             (f"mirror after the collection ({seconds:.2f} s)", mb(pruned)),
             ("baseline: git clone --depth 1 (.git)", mb(du(base / "shallow" / ".git"))),
             ("baseline: git clone --depth 1 (with its work tree)", mb(du(base / "shallow"))),
             ("before: git clone --mirror (kept for ever)", mb(du(base / "whole.git")))]))


def deploy(source: GitSource, store: SnapshotStore, revision: str, base: Base | None):
    writer = store.builder(base)
    source.fetch(revision, writer)
    return writer.seal().manifest


if __name__ == "__main__":
    main()
