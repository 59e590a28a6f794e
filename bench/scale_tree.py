"""One-file changes at 1k, 20k and 50k files (issue 16): the worker's time per deployment,
pruning and clean-up included, once the app recycles a spare release, beside `cp -al` of
the tree and an in-place `rsync -a` of the change, measured in the same run.

    .venv/bin/python bench/scale_tree.py [--sizes 1000,20000,50000] [--runs 5]

Worker time: from DeploymentStarted to the worker letting go of the app's lease and of
`sluice:cleaning:{app}` (the trash emptied, the store maybe collected). The snapshot step
(SnapshotBuilt's seconds) is shown apart: the source is a local path, read in place (no
fetch into a mirror since issue 16's sources/git_in_place.py), so it is the change's trees
and blob read through `git cat-file --batch` and the snapshot written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import git, git_source, make_repo, ms, results_table, start_worker, verdict, wait, write_config
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.core import keys
from orchestrator.deploying.sync import sync_now
from orchestrator.releases.removal import remove_tree
from orchestrator.runtime.embedded_redis import start_redis
from orchestrator.runtime.processes import terminate
from orchestrator.runtime.services import Services

WARM_UP = 7         # keep_releases (5) + 2: from then on each deployment recycles the spare
APP = "tree"


def rel_path(i: int) -> str:
    return f"d{i // 100:04d}/f{i % 100:03d}.bin"


def one_change(services: Services, repo: Path, n: int, i: int) -> tuple[float, float]:
    """(worker seconds with clean-up, snapshot step seconds) of one one-file change deployed."""
    (repo / rel_path((i * 7919 + 1) % n)).write_bytes(os.urandom(1024))
    git(repo, "commit", "--quiet", "-am", f"change {i}")
    queued = sync_now(services, APP)
    d = wait(lambda: _ended(services, queued.deployment_id), 0.002, 300, queued.deployment_id)
    if d.status != "success":
        raise RuntimeError(f"{d.id}: {d.status}: {d.message}")
    wait(lambda: not services.redis.exists(keys.lease(APP), keys.cleaning(APP)), 0.001, 60, "clean-up")
    done = time.time()
    started = next(r.event.at for r in services.store.read(APP)
                   if r.event.type == "DeploymentStarted" and r.event.deployment_id == d.id)
    built = next(r.event for r in services.store.read(APP)
                 if r.event.type == "SnapshotBuilt" and r.event.deployment_id == d.id)
    return done - started, built.seconds


def _ended(services: Services, deployment_id: str):
    d = services.projections.app(APP).deployments.get(deployment_id)
    return d if d is not None and d.terminal else None


def baselines(tree: Path, scratch: Path, runs: int) -> tuple[float, float]:
    """Medians of `cp -al` of the tree, and of `rsync -a` of a one-file change in place."""
    copies = []
    for _ in range(runs):
        os.sync()
        t0 = time.perf_counter()
        subprocess.run(["cp", "-al", str(tree), str(scratch)], check=True)
        copies.append(time.perf_counter() - t0)
        shutil.rmtree(scratch)
    subprocess.run(["cp", "-a", str(tree), str(scratch)], check=True)
    syncs = []
    for i in range(runs):
        (tree / rel_path(i)).write_bytes(os.urandom(1024))
        os.sync()
        t0 = time.perf_counter()
        subprocess.run(["rsync", "-a", f"{tree}/", f"{scratch}/"], check=True)
        syncs.append(time.perf_counter() - t0)
    shutil.rmtree(scratch)
    return statistics.median(copies), statistics.median(syncs)


def measure_size(base: Path, n: int, runs: int) -> dict[str, float]:
    repo = base / f"repo-{n}"
    make_repo(repo, {rel_path(i): os.urandom(1024) for i in range(n)})
    redis_proc = worker = None
    try:
        redis_proc, url = start_redis(base / f"redis-{n}")
        (base / f"w{n}").mkdir()
        cfg = write_config(base / f"w{n}", url, {APP: git_source(repo, "1h")})
        worker = start_worker(cfg, url, base / f"worker-{n}.log")
        services = Services.build(load_config(cfg))
        for i in range(WARM_UP + 1):
            one_change(services, repo, n, i)
        samples = [one_change(services, repo, n, WARM_UP + 1 + i) for i in range(runs)]
    finally:
        terminate(worker)
        terminate(redis_proc)
    tree = base / f"tree-{n}"
    shutil.copytree(repo, tree, ignore=shutil.ignore_patterns(".git"))
    cp, rsync = baselines(tree, base / f"scratch-{n}", runs) if shutil.which("rsync") else (0.0, 0.0)
    return {"worker": statistics.median(s[0] for s in samples),
            "snapshot": statistics.median(s[1] for s in samples), "cp": cp, "rsync": rsync}


def measure(args) -> list[tuple[str, str, str, str]]:
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="sluice-scale-tree-"))
    try:
        figures = {n: measure_size(base, n, args.runs) for n in sizes}
    finally:
        remove_tree(base)
    rows = [(f"one-file change, {n} files: worker (snapshot step)",
             f"{ms(f['worker'])} ({ms(f['snapshot'])})",
             f"cp -al {ms(f['cp'])}, rsync -a in place {ms(f['rsync'])}", "") for n, f in figures.items()]
    small, big = figures[min(sizes)], figures[max(sizes)]
    ratio = big["worker"] / small["worker"]
    rows.append((f"{max(sizes)} / {min(sizes)} files", f"{ratio:.2f}x", "", f"<= 1.5x: {verdict(ratio <= 1.5)}"))
    rows.append((f"{max(sizes)} / {min(sizes)} files without the snapshot step",
                 f"{(big['worker'] - big['snapshot']) / (small['worker'] - small['snapshot']):.2f}x", "", ""))
    if 20000 in figures:
        f = figures[20000]
        rows.append(("20k: worker vs cp -al of the tree", f"{f['worker'] / f['cp']:.2f}x", ms(f["cp"]),
                     f"<= 0.25x: {verdict(f['worker'] <= 0.25 * f['cp'])}"))
        rows.append(("20k: worker vs rsync -a of the change in place", f"{f['worker'] / f['rsync']:.2f}x",
                     ms(f["rsync"]), f"<= 1x: {verdict(f['worker'] <= f['rsync'])}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000,50000")
    parser.add_argument("--runs", type=int, default=5)
    rows = measure(parser.parse_args())
    Console(width=160).print(results_table("One-file changes by tree size (medians)",
                                           ("measure", "sluice", "baseline", "target"), rows))


if __name__ == "__main__":
    main()
