"""A deployment's build: the source's snapshot, with what its build produces on top.

The plan (building/plan.py) follows Kudu's conventions; each step's output is a layer in the
cache (building/layers.py), keyed by what determines it (the dependency manifests' bytes, the
command, the tool's version, the platform, the build's env), so a deployment whose keys are
cached runs nothing. A step that is not cached runs in a scratch copy of the snapshot (real
copies: the store's blobs stay intact whatever the build rewrites), under a per-app build home,
in a minimal environment, in bwrap where there is one, its whole process group killed at
`timeout` or `idle_timeout`; its output lines go to the deployment's log as they come
(BuildOutput events, bounded). A step that fails ends the deployment with its command and
last lines (BuildFailed): the same inputs fail the same way, so it is not retried.
"""
from __future__ import annotations

import fcntl
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestrator.building.command import build_environment, run_build_command, sandbox_for
from orchestrator.building.layers import Digest, LayerCache, collect_output, layer_key, overlay, scratch_copy
from orchestrator.building.plan import TARGET, WHOLE_TREE, BuildStep, plan_build, require_tools
from orchestrator.config.settings import AppConfig, config_file
from orchestrator.core import events as ev
from orchestrator.core.errors import BuildFailed
from orchestrator.releases.removal import remove_tree
from orchestrator.releases.snapshots import Manifest, Snapshot, SnapshotStore

Record = Callable[..., Any]         # (event class, **fields): appends one event of the deployment
ToRecord = tuple[Callable[..., ev.Event], dict[str, Any]]     # an event class, its fields
Events = list[ToRecord]
RecordAll = Callable[[Events], Any]     # appends them together, in one go
MAX_LINES = 2000                    # lines of a build kept in its log
BATCH_LINES, BATCH_SECONDS = 100, 1.0
TAIL_LINES = 20                     # in a failed deployment's message


@dataclass
class BuildContext:
    store: SnapshotStore
    data_dir: Path
    app: str
    deployment_id: str
    config: AppConfig
    record_all: RecordAll
    build_concurrency: int = 1
    rebuild: bool = False
    live: LiveBuild | None = None

    def record(self, event_type: Callable[..., ev.Event], **fields: Any) -> None:
        self.record_all([(event_type, fields)])


@dataclass(frozen=True)
class LiveBuild:
    """The live deployment's build: its snapshot, the source's it was built on, its layers."""
    snapshot: str
    source_snapshot: str
    layers: list[str]


def build(ctx: BuildContext, source: Snapshot, unsaid: Sequence[ToRecord] = ()) -> Snapshot | None:
    """The snapshot to deploy, or None when the app has nothing to build. `unsaid`: events
    of the deployment to record with the build's first (BuildStarted when a step runs, with
    BuildSucceeded when none does: a cached build then costs one append, so a one-file change
    in a built app costs about what it does unbuilt), or at the end when there is no build."""
    told = Telling(ctx, list(unsaid))
    try:
        return _build(ctx, source, told)
    finally:
        told.now()


def _build(ctx: BuildContext, source: Snapshot, told: Telling) -> Snapshot | None:
    manifest = source.manifest
    settings = ctx.config.build.model_copy(update={"python": real_interpreter(ctx.config.build.python)})
    plan = plan_build(settings, manifest.files.keys(),
                      lambda path: ctx.store.read_blob(manifest.files[path].sha256))
    if plan is None:
        return None
    begun: ToRecord | None = (ev.BuildStarted, {"steps": [s.name for s in plan.steps], "why": plan.why})
    started, steps = time.monotonic(), dict[str, float | str]()
    cache, scratch, keys, layers = LayerCache(ctx.store), Scratch(ctx), list[str](), list[Manifest]()
    try:
        for step in plan.steps:
            key = layer_key(step, settings, _inputs(manifest, step, source.id),
                            tool_version(step.tool), PLATFORM)
            keys.append(key)
            layer = None if ctx.rebuild else cache.get(key)
            if layer is None:
                if begun is not None:   # not before: a build that runs nothing needs no tool
                    require_tools(plan)
                    told.now(begun)
                    begun = None
                ran = time.monotonic()
                layer = scratch.run(step, manifest, last=step is plan.steps[-1])
                cache.put(key, layer)
                steps[step.name] = round(time.monotonic() - ran, 3)
            else:
                steps[step.name] = "cached"
                scratch.stale = True
            layers.append(layer)
            manifest = overlay(manifest, layer, step.output)
    finally:
        scratch.remove()
    manifest = _sharing(ctx, source, manifest, keys)
    # not fsynced: it can be made again from the source's snapshot and the layers (one cut
    # short by a crash reads as missing: the next deployment then starts afresh)
    built = Snapshot(ctx.store.save_manifest(manifest, durable=False), manifest, 0, 0)
    files_added, bytes_added = _added(source.manifest, manifest, layers)
    told.now(*([begun] if begun else []), (ev.BuildSucceeded, {
        "snapshot": built.id, "cached": all(v == "cached" for v in steps.values()),
        "seconds": round(time.monotonic() - started, 3), "files_added": files_added,
        "bytes_added": bytes_added, "steps": steps, "layers": keys}))
    return built


@dataclass
class Telling:
    """Events held back to be recorded together with the next ones."""
    ctx: BuildContext
    unsaid: Events

    def now(self, *more: ToRecord) -> None:
        events, self.unsaid = [*self.unsaid, *more], []
        if events:
            self.ctx.record_all(events)


def _added(source: Manifest, built: Manifest, layers: list[Manifest]) -> tuple[int, int]:
    """The files the build put in the tree (not there, or not the same, in the source) and
    their bytes: only the layers' paths are looked at, and one layer that holds none of the
    source's paths is its own answer (its size is worked out once)."""
    paths = set().union(*(layer.files.keys() for layer in layers))
    kept = {p for p in paths & source.files.keys() if source.files[p] == built.files.get(p)}
    if len(layers) == 1 and not kept:
        return len(paths), layers[0].size()
    entries = [built.files[p] for p in paths - kept if p in built.files]
    return len(entries), sum(e.size for e in entries)


def _sharing(ctx: BuildContext, source: Snapshot, built: Manifest, keys: list[str]) -> Manifest:
    """The built manifest, sharing the live build's buckets where it can: the same layers on a
    source that changed at some paths give a tree that differs from the live build's only
    there, so sealing it writes only those paths' buckets."""
    live = ctx.live
    if live is None or live.layers != keys:
        return built
    try:
        live_built, live_source = ctx.store.manifest(live.snapshot), ctx.store.manifest(live.source_snapshot)
    except (FileNotFoundError, ValueError):
        return built
    return live_built.derive(built.files, built.links, source.manifest.changed(live_source))


def _inputs(manifest: Manifest, step: BuildStep, source_id: str) -> dict[str, bytes | str]:
    if step.inputs == WHOLE_TREE:
        return {WHOLE_TREE[0]: source_id}
    return {p: Digest(manifest.files[p].sha256) for p in step.inputs if p in manifest.files}


@dataclass
class Scratch:
    """Where steps that are not cached run: {data_dir}/builds/{app}/{deployment}/src, a copy
    of the snapshot with the steps before on top (copied again when a cached step changed it)."""
    ctx: BuildContext
    stale: bool = True
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.ctx.data_dir / "builds" / self.ctx.app / self.ctx.deployment_id

    def run(self, step: BuildStep, manifest: Manifest, last: bool = False) -> Manifest:
        """The step's layer; `last`: no step runs here after it, so its files may move into
        the store instead of being copied."""
        src, target = self.root / "src", self.root / "target"
        if self.stale:
            self.remove()
            scratch_copy(self.ctx.store, manifest, src)
            target.mkdir(parents=True)
            (self.root / "tmp").mkdir()
            self.stale = False
        home = self.ctx.data_dir / "build-home" / self.ctx.app
        home.mkdir(parents=True, exist_ok=True)
        # TMPDIR on the scratch's mount, not the home's: under bwrap each is a bind mount of
        # its own, and pip --target renames what it installed from TMPDIR into the tree
        env = build_environment(home, {"TMPDIR": str(self.root / "tmp"), **self.ctx.config.build.env,
                                       "DEPLOYMENT_SOURCE": str(src), "DEPLOYMENT_TARGET": str(target)})
        # the build sees neither Sluice's data (the store, other apps, the Redis password) nor
        # its config (secrets): only its scratch and home, inside the data dir, show again
        sandbox = sandbox_for(self.ctx.config.build.sandbox, [self.root, home],
                              hidden=[self.ctx.data_dir.resolve(), config_file().resolve()])
        log = BuildLog(self.ctx.record, step.name)
        with build_slot(self.ctx.data_dir, self.ctx.build_concurrency):
            result = run_build_command(step.command, src, env, timeout=self.ctx.config.build.timeout,
                                       idle_timeout=self.ctx.config.build.idle_timeout,
                                       on_output=log.line, sandbox=sandbox, on_quiet=log.quiet)
        log.flush()
        if result.exit_code != 0 or result.timed_out:
            self.ctx.record(ev.BuildFailed, step=step.name, command=shlex.join(step.command),
                            exit_code=result.exit_code, tail=result.tail[-TAIL_LINES:],
                            timed_out=result.timed_out)
            raise BuildFailed(_failure(step, result.exit_code, result.timed_out, result.tail))
        if step.output == TARGET:
            self.stale = True       # what deploys is the target's contents, not src
            return collect_output(self.ctx.store, target, Manifest({}, {}), "", move=True)
        return collect_output(self.ctx.store, src, manifest, step.output, move=last)

    def remove(self) -> None:
        if self.root.exists():
            remove_tree(self.root)


def _failure(step: BuildStep, exit_code: int | None, timed_out: str | None, tail: list[str]) -> str:
    how = (f"was killed after its {timed_out.replace('_', ' ')}" if timed_out
           else f"exited with code {exit_code}")
    last = "\n".join(tail[-TAIL_LINES:])
    return (f"build step {step.name} (`{shlex.join(step.command)}`, asked for by {step.asked_by}) "
            f"{how}" + (f"; its last lines:\n{last}" if last else ""))


class BuildLog:
    """A step's output lines into BuildOutput events: in batches (at most BATCH_LINES, or
    what came in BATCH_SECONDS, or what came before a quiet spell), at most MAX_LINES in all,
    the rest counted."""

    def __init__(self, record: Record, step: str, clock: Callable[[], float] = time.monotonic):
        self.record, self.step, self.clock = record, step, clock
        self.batch: list[str] = []
        self.kept = self.dropped = 0
        self.last_flush = clock()

    def line(self, text: str) -> None:
        if self.kept >= MAX_LINES:
            self.dropped += 1
            return
        self.batch.append(text)
        self.kept += 1
        if len(self.batch) >= BATCH_LINES or self.clock() - self.last_flush >= BATCH_SECONDS:
            self.flush()

    def quiet(self) -> None:
        """The build printed nothing for a while: what it printed before goes out now, so a
        line followed by a long silence (a compile, a download) shows while it lasts."""
        if self.clock() - self.last_flush >= BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.batch or self.dropped:
            self.record(ev.BuildOutput, step=self.step, lines=self.batch, dropped=self.dropped)
        self.batch, self.dropped, self.last_flush = [], 0, self.clock()


@contextmanager
def build_slot(data_dir: Path, slots: int) -> Iterator[None]:
    """One of `slots` builds at a time on this machine's data dir (worker.build_concurrency):
    file locks, so the worker's pool processes share them and a killed build frees its slot."""
    folder = data_dir / "builds" / ".slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for n in range(slots):
            fd = os.open(folder / f"{n}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield
                return
            finally:
                os.close(fd)
        time.sleep(0.2)


PLATFORM = f"{sys.platform}-{platform.machine()}"


@lru_cache(maxsize=8)
def real_interpreter(python: str) -> str:
    """The interpreter `python` runs in the end: a pyenv or asdf shim is a script that runs it
    and writes beside itself, which a sandboxed build may not; the real one has neither need."""
    try:
        done = subprocess.run([python, "-c", "import sys; print(sys.executable)"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return python           # the plan then names it as a tool this machine lacks
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else python


@lru_cache(maxsize=32)
def tool_version(tool: str) -> str:
    """What `tool --version` prints (for the cache key: a new interpreter or Node rebuilds)."""
    if tool in ("sh", ""):
        return ""
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    version = (done.stdout or done.stderr).strip()
    if tool == "npm":           # npm ci's result depends on Node's version too
        version += " node " + tool_version("node")
    return version
