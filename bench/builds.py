"""Builds benchmark (issue 14): a Python function app whose requirements.txt names --wheels
local wheels, deployed through a real `sluice worker` and redis-server, beside baselines
measured in the same run.

    .venv/bin/python bench/builds.py [--wheels 24] [--modules 40] [--runs 5]

(a) First deployments: the build step (BuildSucceeded.seconds: scratch copy, pip, taking
    the output into the store) beside a bare `python -m pip install --target DIR -r
    requirements.txt` of the same requirements, alternated, medians of --runs, target <=
    1.15x; the whole deployment is printed too. Each run has a wheelhouse of its own (other
    bytes, another folder in build.env), so each build is a first one: no layer, no blob.
    Before them the worker builds a one-wheel app, so its first task's imports and probes
    (bwrap, the interpreter's version) are not counted in a run.
(b) A one-file code change with the dependencies cached, beside the same change to the same
    files deployed with `build: none` (medians of --runs each, alternated), target <= 1.2x;
    also beside `build: none` with the installed packages committed (the same release), and
    where the time goes (the cached build step; the release's materialise step).
(c) The same change rebuilt every time, as Kudu does (`sluice sync --rebuild`): ratio printed.
A deployment's time is its worker's, DeploymentStarted to its end. Offline: the wheels are
written by the bench (tests/wheelhouse.py), pip gets PIP_NO_INDEX and PIP_FIND_LINKS; both pip
runs use this interpreter. The sandbox is build.sandbox's default (auto: bwrap when present).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from common import ROOT, git, make_repo, results_table, sluice_running, verdict
from rich.console import Console

from orchestrator.core import events as ev
from orchestrator.core import keys
from orchestrator.core.projections import DeploymentView
from orchestrator.deploying.sync import sync_now

sys.path.insert(0, str(ROOT))
from tests.wheelhouse import write_wheel  # noqa: E402

TARGET_FIRST, TARGET_CACHED = 1.15, 1.2
SITE_PACKAGES = ".python_packages/lib/site-packages"
console = Console(width=150)
E = TypeVar("E", bound=ev.Event)
FUNCTION_APP = {
    "host.json": b'{"version": "2.0"}',
    "HttpHello/function.json": b'{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}]}',
    "HttpHello/__init__.py": b"def main(req):\n    return 'v0'\n",
}


def write_wheelhouse(folder: Path, wheels: int, modules: int, run: int) -> list[str]:
    """`wheels` packages of `modules` modules each (about 2 KB apiece, their bytes this
    run's own), every fourth one requiring the next, so pip resolves as well as unpacks;
    returns the requirement lines."""
    names = [f"benchpkg{n:02d}" for n in range(wheels)]
    for n, name in enumerate(names):
        requires = (names[n + 1],) if n % 4 == 0 and n + 1 < wheels else ()
        extra = {f"mod{m:02d}.py": f"# {name} module {m}, run {run}\n" + f"VALUE_{m} = {m!r}\n" * 90
                 for m in range(modules)}
        write_wheel(folder, name, "1.0", requires=requires, extra=extra)
    return [f"{name}==1.0" for name in names]


def pip_env(wheels: Path) -> dict[str, str]:
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def bare_pip(requirements: Path, into: Path, env: dict[str, str]) -> float:
    """Seconds a bare `pip install --target` of the requirements takes, into a fresh folder."""
    if into.exists():
        shutil.rmtree(into)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pip", "install", "--target", str(into), "-r",
                    str(requirements), "--disable-pip-version-check", "--no-input", "--quiet"],
                   check=True, cwd=requirements.parent, env={**os.environ, **env})
    return time.monotonic() - started


class Bench:
    """Apps of one repository each, deployed by one `sluice worker` and redis-server."""

    def __init__(self, base: Path, apps: dict[str, tuple[dict[str, bytes], object]]):
        self.base = base
        self.repos = {app: base / "repos" / app for app in apps}
        for app, (files, _) in apps.items():
            make_repo(self.repos[app], files)
        self.apps = {app: {"layout": "functions", "target": str(base / "sites" / app), "build": build,
                           "source": {"type": "git", "url": str(self.repos[app]), "branch": "master",
                                      "poll_interval": "1h"}}
                     for app, (_, build) in apps.items()}
        self.changes = 0

    @contextmanager
    def running(self) -> Iterator[Bench]:
        with sluice_running(self.base, self.apps) as services:
            self.services = services
            yield self

    def change_code(self, app: str) -> None:
        """One file of the app changed and committed, as a push would."""
        self.changes += 1
        repo = self.repos[app]
        (repo / "HttpHello/__init__.py").write_text(f"def main(req):\n    return 'v{self.changes}'\n")
        git(repo, "commit", "--quiet", "-am", f"change {self.changes}")

    def deploy(self, app: str, rebuild: bool = False) -> DeploymentView:
        queued = sync_now(self.services, app, rebuild=rebuild).deployment_id
        if queued is None:
            raise SystemExit(f"{app}: nothing to deploy (the head is live already)")
        d = self.until(lambda: self._ended(app, queued), f"{app}'s deployment")
        # its worker prunes and lets go of the app after recording the end: not in the next run
        self.until(lambda: not self.services.redis.exists(keys.lease(app)), f"the lease of {app}")
        if d.status != "success":
            raise SystemExit(f"{app}: deployment {d.id} {d.status}: {d.message}")
        return d

    def _ended(self, app: str, deployment_id: str) -> DeploymentView | None:
        d = self.services.projections.app(app).deployments.get(deployment_id)
        return d if d and d.terminal else None

    def built(self, app: str, deployment_id: str) -> ev.BuildSucceeded:
        return self.event(app, deployment_id, ev.BuildSucceeded)

    def materialised(self, app: str, deployment_id: str) -> float:
        """Seconds its release took to build (DeploymentSucceeded.steps)."""
        return (self.event(app, deployment_id, ev.DeploymentSucceeded).steps or {})["materialise"]

    def event(self, app: str, deployment_id: str, kind: type[E]) -> E:
        found = [r.event for r in self.services.store.read(app)
                 if isinstance(r.event, kind) and getattr(r.event, "deployment_id", None) == deployment_id]
        if not found:
            raise SystemExit(f"{app}: deployment {deployment_id} recorded no {kind.__name__}")
        return found[0]

    @staticmethod
    def until(predicate, what: str, timeout: float = 600):
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            time.sleep(0.2)     # the times are the events'; a busier poll would load the build
        return value


def cache_hit(built: ev.BuildSucceeded) -> float:
    if not built.cached:
        raise SystemExit(f"a code-only change was not a cache hit: {built}")
    return built.seconds


def seconds(d: DeploymentView) -> float:
    assert d.started_at is not None and d.ended_at is not None
    return d.ended_at - d.started_at


def median(values: list[float]) -> float:
    return statistics.median(values)


def figure(values: list[float]) -> str:
    """Seconds, or milliseconds below one: a cached change takes a few of them."""
    m = median(values)
    return (f"{m:.2f} s" if m >= 1 else f"{m * 1000:.1f} ms") + (f" (n={len(values)})" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheels", type=int, default=24)
    parser.add_argument("--modules", type=int, default=40, help="modules in each wheel")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-bench-builds-") as tmp:
        base = Path(tmp)
        houses = [base / f"wheels-{run}" for run in range(args.runs)]
        for run, house in enumerate(houses):
            requirements = write_wheelhouse(house, args.wheels, args.modules, run)
        source = {**FUNCTION_APP, "requirements.txt": ("\n".join(requirements) + "\n").encode()}
        (base / "bare").mkdir()
        (base / "bare" / "requirements.txt").write_bytes(source["requirements.txt"])
        bare_pip(base / "bare" / "requirements.txt", base / "vendor", pip_env(houses[0]))
        vendored = {f"{SITE_PACKAGES}/{p.relative_to(base / 'vendor')}": p.read_bytes()
                    for p in sorted((base / "vendor").rglob("*")) if p.is_file()}
        built = {"python": sys.executable, "env": pip_env(houses[0])}
        write_wheel(base / "wheels-warm-up", "warmup")
        warm_up = {**FUNCTION_APP, "requirements.txt": b"warmup\n"}
        bench = Bench(base / "sluice", {
            "warm-up": (warm_up, {"python": sys.executable, "env": pip_env(base / "wheels-warm-up")}),
            **{f"first-{run}": (source, {**built, "env": pip_env(house)}) for run, house in enumerate(houses)},
            "built": (source, built), "plain": (source, "none"), "vendored": ({**source, **vendored}, "none")})
        with bench.running():
            bench.deploy("warm-up")     # the worker's first build (imports, probes): not measured
            rows = first_builds(bench, base / "bare", houses) + code_changes(bench, args.runs, len(vendored))
    console.print(results_table(
        f"Builds: a function app of {args.wheels} local wheels ({args.modules} modules each), "
        f"{args.runs} runs; deployments timed by their worker", ("measure", "figure", "baseline", "ratio",
                                                                 "target", "verdict"), rows))


def first_builds(bench: Bench, bare: Path, houses: list[Path]) -> list[tuple[str, ...]]:
    """(a): each run a bare pip, then the first build of an app whose wheels (their bytes and
    their folder, so the layer's key too) no build has seen, alternated so the machine's load
    weighs on both alike."""
    pip, builds, deployments, files = [], [], [], 0
    for run, house in enumerate(houses):
        pip.append(bare_pip(bare / "requirements.txt", bare / "site-packages", pip_env(house)))
        d = bench.deploy(f"first-{run}")
        built = bench.built(f"first-{run}", d.id)
        builds.append(built.seconds)
        deployments.append(seconds(d))
        files = built.files_added
    ratio = median(builds) / median(pip)
    return [(f"(a) first build: the build step ({files} files added)", figure(builds),
             f"bare pip --target {figure(pip)}", f"{ratio:.2f}x", f"<= {TARGET_FIRST}x",
             verdict(ratio <= TARGET_FIRST)),
            ("(a) first deployment, whole (with the build)", figure(deployments),
             f"bare pip --target {figure(pip)}", f"{median(deployments) / median(pip):.2f}x", "", "")]


# keep_releases (5) + 2 deployments: from then on a deployment starts from the app's spare
WARM_UP = 7


def code_changes(bench: Bench, runs: int, vendored: int) -> list[tuple[str, ...]]:
    """(b) and (c): one-file changes to an app whose dependencies are cached, to the same
    files deployed with build: none, to the same files with the packages committed (the
    same release, built by nobody), and rebuilt every time."""
    apps = ("built", "plain", "vendored")
    times: dict[str, list[float]] = {app: [] for app in (*apps, "rebuilt")}
    materialise: dict[str, list[float]] = {app: [] for app in apps}
    rebuild_steps, cached_steps = [], []
    for _ in range(WARM_UP):        # until each app recycles a spare release, as it does for good
        for app in apps:
            bench.change_code(app)
            bench.deploy(app)
    for _ in range(runs):
        for app in apps:
            bench.change_code(app)
            d = bench.deploy(app)
            times[app].append(seconds(d))
            materialise[app].append(bench.materialised(app, d.id))
            if app == "built":
                cached_steps.append(cache_hit(bench.built(app, d.id)))
    for _ in range(runs):       # after (b): a rebuild's new layer would make (b) patch it all
        bench.change_code("built")
        d = bench.deploy("built", rebuild=True)
        times["rebuilt"].append(seconds(d))
        rebuild_steps.append(bench.built("built", d.id).seconds)
    cached = median(times["built"])
    plain, same_tree = cached / median(times["plain"]), cached / median(times["vendored"])
    return [
        ("(b) one-file change, dependencies cached", figure(times["built"]),
         f"build: none {figure(times['plain'])}", f"{plain:.2f}x", f"<= {TARGET_CACHED}x",
         verdict(plain <= TARGET_CACHED)),
        (f"(b) the same, beside build: none with the {vendored} files committed",
         figure(times["built"]), f"build: none {figure(times['vendored'])}", f"{same_tree:.2f}x",
         f"<= {TARGET_CACHED}x", verdict(same_tree <= TARGET_CACHED)),
        ("(b) where the time goes: its build step (cached)", figure(cached_steps), "", "", "", ""),
        ("(b) where the time goes: its release (the spare, patched)", figure(materialise["built"]),
         f"build: none {figure(materialise['plain'])}, committed {figure(materialise['vendored'])}",
         "", "", ""),
        ("(c) one-file change rebuilt every time (Kudu; --rebuild)", figure(times["rebuilt"]),
         f"cached {figure(times['built'])}", f"{median(times['rebuilt']) / cached:.2f}x", "", ""),
        ("(c) its build step", figure(rebuild_steps), "", "", "", ""),
    ]


if __name__ == "__main__":
    main()
