"""Head-check benchmark: in-process checks beside git/hg subprocesses, measured in the same run.

    .venv/bin/python bench/head_checks.py [--checks 300] [--apps 2000] [--samples 20]
                                          [--local-checks 2000] [--local-only]

0. A local repository (a work tree, its branch a loose ref): GitSource.head(), which reads
   the refs in-process, beside the check Sluice made before (GitSource._ls_remote_head:
   GitPython running `git ls-remote PATH refs/heads/master`) and a bare `git ls-remote`,
   interleaved in one run: medians per check of wall and CPU (this process's and its
   children's), once the repository is as a poller mostly meets it: unchanged for longer
   than the stat cache's racy window (2 s).
1. Git over HTTP: a bare repo served by the real `git http-backend` (CGI, one per request)
   behind tests/servers/git_http.py in a separate process. remote_head() --checks times
   beside `git ls-remote URL refs/heads/master` (--checks/5 times): wall and client CPU.
2. Mercurial over HTTP (`hg serve`): HgSource.head() beside `hg id -r default URL`.
3. One Poller (concurrency 32) over --apps unchanged git apps on that server: checks/min.
4. Webhook-to-live: real API (uvicorn) and Celery worker processes; a signed GitHub push per
   one-file commit, timed from the POST until the live file shows the change.
Before each timed section it waits (5 s polls, up to 10 min) until no `python -m pytest` runs.
Real redis-server; everything lives in a temp dir, removed at the end.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from common import GIT_ENV, ROOT, git, ms, pct, results_table, run, verdict, wait
from rich.console import Console

from orchestrator.config.settings import load_config
from orchestrator.config.sources import GitSourceConfig, HgSourceConfig
from orchestrator.core import keys
from orchestrator.releases.removal import remove_tree
from orchestrator.runtime.embedded_redis import free_port, start_redis
from orchestrator.runtime.processes import die_with_parent, terminate
from orchestrator.runtime.services import Services
from orchestrator.sources import fingerprint
from orchestrator.sources.git import GitSource
from orchestrator.sources.git_http import remote_head
from orchestrator.sources.hg import HgSource, hg_executable
from orchestrator.sources.stat_cache import RACY_NS
from orchestrator.triggers.poller import Poller

sys.path.insert(0, str(ROOT))
from tests.helpers import FIXTURES  # noqa: E402

HG_ENV = {"HGPLAIN": "1", "HGRCPATH": "", "HGUSER": "bench"}
PUSH = FIXTURES / "github" / "push_with-new-branch.payload.json"
SECRET, CONCURRENCY = "bench-webhook-secret", 32
console = Console(width=150)
notes: list[str] = []


def busy() -> bool:
    return subprocess.run(["pgrep", "-f", "python -m pytest"], capture_output=True).returncode == 0


@contextmanager
def quiet(section: str):
    """Run the block once no other test suite runs (up to 10 min); note it if one ran."""
    deadline = time.monotonic() + 600
    if busy():
        console.print(f"{section}: waiting for another pytest run to finish ...")
    while busy() and time.monotonic() < deadline:
        time.sleep(5)
    console.print(f"measuring {section} ...")
    contended = busy()
    yield
    if contended or busy():
        notes.append(f"{section}: another `python -m pytest` ran during the measurement")


def start(cmd: list, log: Path, pattern: str, env: dict | None = None):
    """A server process, once `pattern` shows in its output; (process, group 1)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, env={**os.environ, **(env or {})},
                                preexec_fn=die_with_parent)

    def found():
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited:\n" + log.read_text(errors="replace")[-3000:])
        return (m := re.search(pattern, log.read_text(errors="replace"))) and m.group(1)
    try:
        return proc, wait(found, 0.05, 60, f"{cmd[:4]} to start")
    except BaseException:
        terminate(proc)
        raise


@contextmanager
def apart(server: int):
    """Server on the last core, this process (and the subprocesses it starts) on the others,
    as if the server were another machine: sharing a core, the server's CGI forks evict the
    client's caches, and a check's client CPU then measures the server as much as the client."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield
        return
    tasks = [int(t) for t in os.listdir(f"/proc/{server}/task")]
    for task in tasks:
        os.sched_setaffinity(task, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))
    try:
        yield
    finally:
        os.sched_setaffinity(0, set(cpus))
        for task in [int(t) for t in os.listdir(f"/proc/{server}/task")]:
            os.sched_setaffinity(task, set(cpus))


def children_cpu() -> float:
    """CPU seconds of every child process waited for so far (live servers not counted)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def server_cpu(pid: int) -> float:
    """CPU seconds of a live server process plus its finished children (the CGI runs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(check, n: int, expected: str, cpu, server: int) -> dict:
    """Per check: wall, client CPU (by `cpu`), server CPU; after one checked warm-up."""
    if expected[:12] not in (said := str(check())):
        raise RuntimeError(f"head check said {said!r}, expected {expected}")
    w0, c0, s0 = time.perf_counter(), cpu(), server_cpu(server)
    for _ in range(n):
        check()
    return {"n": n, "wall": (time.perf_counter() - w0) / n, "cpu": (cpu() - c0) / n,
            "server": (server_cpu(server) - s0) / n}


def git_repo(path: Path) -> str:
    """A working repo with one commit of index.html; its head."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=master")
    (path / "index.html").write_text("v0")
    git(path, "add", "-A")
    git(path, "commit", "--quiet", "-m", "initial")
    return git(path, "rev-parse", "HEAD")


def git_section(url: str, head: str, server: int, n: int) -> tuple[dict, dict]:
    with quiet("git head checks"), apart(server):
        ours = measure(lambda: remote_head(url, "master"), n, head, time.process_time, server)
        theirs = measure(lambda: run(["git", "ls-remote", url, "refs/heads/master"]),
                         max(10, n // 5), head, children_cpu, server)
    return ours, theirs


def hg_section(base: Path, n: int, procs: list) -> tuple[dict, dict]:
    hg, repo = hg_executable(), base / "hg-repo"
    repo.mkdir()
    run([hg, "init"], repo, HG_ENV)
    (repo / "index.html").write_text("v0")
    run([hg, "commit", "--quiet", "-A", "-m", "initial"], repo, HG_ENV)
    node = run([hg, "log", "-r", "default", "-T", "{node}"], repo, HG_ENV)
    proc, port = start([hg, "serve", "-R", repo, "-a", "127.0.0.1", "-p", "0", "--config",
                        "web.push_ssl=False"], base / "hg-serve.log",
                       r"bound to 127\.0\.0\.1:(\d+)", HG_ENV)
    procs.append(proc)
    url = f"http://127.0.0.1:{port}/"
    source = HgSource(HgSourceConfig(type="hg", url=url), base / "hg-cache")
    with quiet("hg head checks"), apart(proc.pid):
        ours = measure(source.head, n, node, time.process_time, proc.pid)
        theirs = measure(lambda: run([hg, "id", "-r", "default", url], env=HG_ENV),
                         max(10, n // 5), node, children_cpu, proc.pid)
    return ours, theirs


def poller_section(base: Path, url: str, head: str, redis_url: str, n: int, server: int) -> dict:
    """Every app checked once by one Poller (no change anywhere), then a bare thread pool."""
    names = [f"app-{i:04d}" for i in range(n)]
    apps = {name: {"layout": "site", "target": str(base / "sites" / name),
                   "source": {"type": "git", "url": url, "branch": "master", "poll_interval": "1h"}}
            for name in names}
    cfg = base / "poll.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(base / "data"), "redis_url": redis_url,
                                   "apps": apps}))
    services = Services.build(load_config(cfg))
    services.redis.hset(keys.POLL_CURSOR, mapping={
        name: f"{fingerprint(services.config.apps[name])} {head}" for name in names})
    poller = Poller(services, concurrency=CONCURRENCY)
    poller.register()
    with quiet(f"one poller over {n} apps"):
        results, w0, c0, s0 = [], time.perf_counter(), time.process_time(), server_cpu(server)
        while len(results) < n:
            if not (done := poller.tick()):
                raise RuntimeError(f"a tick found nothing due after {len(results)} checks")
            results += done
        r = {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0,
             "server": server_cpu(server) - s0, "checks": len(results),
             "errors": [x.error for x in results if x.error],
             "changed": sum(x.queued is not None for x in results)}
    with quiet("bare remote_head thread pool"), ThreadPoolExecutor(CONCURRENCY) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda _: remote_head(url, "master"), range(n)))
        r["bare"] = time.perf_counter() - t0
    return r


def deliver(client: httpx.Client, repo: Path, live: Path, content: str) -> float:
    """Commit a change, POST its signed push; seconds from the POST until it is live."""
    (repo / "index.html").write_text(content)
    git(repo, "commit", "--quiet", "-am", content)
    body = json.dumps({**json.loads(PUSH.read_text()), "ref": "refs/heads/master",
                       "after": git(repo, "rev-parse", "HEAD")}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
               "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": f"sha256={signature}"}
    t0 = time.perf_counter()
    answer = client.post("/hooks/github/hook", content=body, headers=headers)
    if answer.status_code != 202 or answer.json().get("status") != "queued":
        raise RuntimeError(f"webhook answered {answer.status_code}: {answer.text}")
    wait(lambda: live.exists() and live.read_bytes() == content.encode(), 0.005, 60,
         f"{content} to go live")
    return time.perf_counter() - t0


def webhook_section(base: Path, redis_url: str, samples: int, procs: list) -> list[float]:
    repo, port = base / "hook-repo", free_port()
    git_repo(repo)
    app = {"layout": "site", "target": str(base / "sites" / "hook"),
           "source": {"type": "github", "url": str(repo), "branch": "master", "secret": SECRET,
                      "poll_interval": 0}}
    cfg = base / "hook.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(base / "hook-data"), "redis_url": redis_url,
                                   "api": {"listen": f"127.0.0.1:{port}"}, "apps": {"hook": app}}))
    cli = [sys.executable, "-m", "orchestrator.cli", "--config", cfg]
    env = {**GIT_ENV, "SLUICE_REDIS_URL": redis_url}
    procs.append(start(cli + ["worker"], base / "worker.log", r"(ready)\.", env)[0])
    procs.append(start(cli + ["api"], base / "api.log", r"Uvicorn running on (http\S+)", env)[0])
    live = base / "sites" / "hook" / "index.html"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        wait(lambda: client.get("/healthz").status_code == 200, 0.05, 30, "the API")
        deliver(client, repo, live, "warm-up")      # the first one clones the worker's mirror
        with quiet("webhook-to-live latency"):
            return [deliver(client, repo, live, f"v{i}") for i in range(1, samples + 1)]


def local_section(base: Path, n: int) -> dict[str, dict]:
    """Local head checks, one of the former kinds after each few in-process ones, so that
    whatever else the machine does weighs on both alike."""
    work = base / "work"
    head = git(work, "rev-parse", "HEAD")
    source = GitSource(GitSourceConfig(type="git", url=str(work)), base / "git-cache")
    kinds = {"in-process": source.head, "former": source._ls_remote_head,
             "bare": lambda: run(["git", "ls-remote", str(work), "refs/heads/master"]).split()[0]}
    every = {"in-process": 1, "former": 10, "bare": 10}
    samples: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in kinds}
    for kind, check in kinds.items():
        if (said := check()) != head:
            raise RuntimeError(f"{kind} head check said {said!r}, expected {head}")
    time.sleep(RACY_NS / 1e9)       # files changed within it are read whole at every check
    with quiet("local head checks"):
        for i in range(n):
            for kind, check in kinds.items():
                if i % every[kind] == 0:
                    c0, w0 = time.process_time() + children_cpu(), time.perf_counter()
                    check()
                    samples[kind]["wall"].append(time.perf_counter() - w0)
                    samples[kind]["cpu"].append(time.process_time() + children_cpu() - c0)
    return {kind: {"n": len(s["cpu"]), "wall": statistics.median(s["wall"]),
                   "cpu": statistics.median(s["cpu"])} for kind, s in samples.items()}


def local_bench(base: Path, args) -> dict:
    git_repo(base / "work")
    return {"local": local_section(base, args.local_checks)}


def bench(base: Path, args) -> dict:
    procs: list[subprocess.Popen] = []
    try:
        head, bare = git_repo(base / "work"), base / "served" / "site.git"
        run(["git", "clone", "--quiet", "--bare", str(base / "work"), str(bare)])
        server, served = start([sys.executable, "-m", "tests.servers.git_http", base / "served"],
                               base / "git-http.log", r"(http://\S+)")
        procs.append(server)
        url = f"{served}/site.git"
        r = {"local": local_section(base, args.local_checks),
             "git": git_section(url, head, server.pid, args.checks),
             "hg": hg_section(base, args.checks, procs)}
        redis_proc, redis_url = start_redis(base / "redis")
        procs.append(redis_proc)
        r["poll"] = poller_section(base, url, head, redis_url, args.apps, server.pid)
        r["hook"] = webhook_section(base, redis_url, args.samples, procs)
        return r
    finally:
        for proc in reversed(procs):
            terminate(proc)


def check_rows(kind: str, base: str, ours: dict, theirs: dict) -> list[tuple]:
    cpu_ratio, wall_ratio = theirs["cpu"] / max(ours["cpu"], 1e-9), theirs["wall"] / ours["wall"]
    return [(f"{kind} head check: client CPU ({ours['n']} / {theirs['n']})", ms(ours["cpu"]),
             f"{base} {ms(theirs['cpu'])}", f"{cpu_ratio:.0f}x cheaper", ">= 100x cheaper",
             verdict(cpu_ratio >= 100)),
            (f"{kind} head check: wall", ms(ours["wall"]), f"{base} {ms(theirs['wall'])}",
             f"{wall_ratio:.1f}x faster"),
            ("  server CPU per check", ms(ours["server"]), f"{base} {ms(theirs['server'])}")]


def local_rows(r: dict[str, dict]) -> list[tuple]:
    ours, former, bare = r["in-process"], r["former"], r["bare"]
    ratio = former["cpu"] / max(ours["cpu"], 1e-9)
    return [(f"local head check: CPU, median ({ours['n']} / {former['n']})", us(ours["cpu"]),
             f"git ls-remote (Sluice's former check) {ms(former['cpu'])}", f"{ratio:.0f}x cheaper",
             ">= 100x cheaper", verdict(ratio >= 100)),
            ("local head check: wall, median", us(ours["wall"]), f"{ms(former['wall'])}",
             f"{former['wall'] / ours['wall']:.0f}x faster"),
            (f"  bare `git ls-remote` ({bare['n']}): CPU / wall", "", f"{ms(bare['cpu'])} / "
             f"{ms(bare['wall'])}", f"{bare['cpu'] / max(ours['cpu'], 1e-9):.0f}x cheaper")]


def us(s: float) -> str:
    return f"{s * 1e6:.0f} µs"


def report(r: dict) -> None:
    if "poll" not in r:
        console.print(results_table(
            f"Sluice local head checks ({os.cpu_count()} cores; counts: in-process / former)",
            ("measure", "sluice", "baseline", "ratio", "target", "verdict"), local_rows(r["local"])))
        for line in notes:
            console.print(f"[yellow]note:[/] {line}")
        return
    p, lat = r["poll"], r["hook"]
    per_min, bare = p["checks"] / p["wall"] * 60, p["checks"] / p["bare"] * 60
    rows = [*local_rows(r["local"]),
            *check_rows("git/HTTP", "git ls-remote", *r["git"]),
            *check_rows("hg/HTTP", "hg id", *r["hg"]),
            (f"poller: checks/min ({p['checks']} apps, {CONCURRENCY} threads)", f"{per_min:,.0f}",
             f"bare remote_head x{CONCURRENCY} {bare:,.0f}", f"{per_min / bare:.2f}x bare",
             ">= 10,000/min", verdict(per_min >= 10000 and not p["errors"])),
            ("  poller CPU per check (all its threads)", ms(p["cpu"] / p["checks"])),
            ("  server CPU per check (CGI git http-backend)", ms(p["server"] / p["checks"])),
            ("  failed / changed checks", f"{len(p['errors'])} / {p['changed']}"),
            (f"webhook-to-live p50 ({len(lat)} pushes)", ms(pct(lat, .5)), "", "", "<= 1 s",
             verdict(pct(lat, .5) <= 1.0)),
            ("  p90 / max", f"{ms(pct(lat, .9))} / {ms(max(lat))}")]
    console.print(results_table(
        f"Sluice head-check benchmark ({os.cpu_count()} cores; counts: in-process / subprocess)",
        ("measure", "sluice", "baseline", "ratio", "target", "verdict"), rows))
    console.print("The served side is a CGI `git http-backend` per request (plus a Python "
                  "threaded HTTP server), on the same machine: it bounds the poller's figure. "
                  "During the head-check rows the server runs on the last core and the client "
                  "(and its subprocesses) on the others.")
    for line in notes + [f"first failure: {e}" for e in p["errors"][:1]]:
        console.print(f"[yellow]note:[/] {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=300, help="in-process head checks per kind")
    parser.add_argument("--apps", type=int, default=2000, help="apps for the poller")
    parser.add_argument("--samples", type=int, default=20, help="webhook-to-live samples")
    parser.add_argument("--local-checks", type=int, default=2000,
                        help="in-process local head checks (a tenth as many of the others)")
    parser.add_argument("--local-only", action="store_true", help="only the local head checks")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sluice-heads-"))
    try:
        results = local_bench(base, args) if args.local_only else bench(base, args)
    finally:
        remove_tree(base)
    report(results)


if __name__ == "__main__":
    main()
