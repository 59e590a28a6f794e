"""Cloud-folder benchmark: a 5,000-file folder on the fake Dropbox and the fake OneDrive.

    .venv/bin/python bench/cloud_sync.py [--files 5000] [--samples 10]

For each cloud: the first sync (listing and downloading every file) as files per second,
beside Kudu's documented Dropbox pace (5 concurrent downloads, about 9 files/s); then one
changed file, which must download exactly that file. Then Dropbox change-to-live through
`list_folder/longpoll`: a Poller (with its longpoll watchers) in this process, a Celery
worker process, a one-file change per sample, timed until the live file shows it.
The fakes (tests/servers/) speak HTTPS on loopback with a throwaway CA; the real dropbox
SDK, MSAL and requests talk to them. Real redis-server; everything in a temp dir.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, ms, pct, results_table, start_worker, verdict, wait, write_config
from rich.console import Console

sys.path.insert(0, str(ROOT))
from tests.servers.fake_dropbox import FakeDropbox  # noqa: E402
from tests.servers.fake_graph import FakeGraph  # noqa: E402

KUDU_FILES_PER_SECOND = 9.0
console = Console(width=150)


def folder(n: int) -> dict[str, bytes]:
    """n small files in 50 folders, like a function app with its dependencies."""
    return {f"pkg{i % 50:02d}/module_{i:05d}.js": f"// {i}\n".encode() * 20 for i in range(n)}


def synced(services, app: str, timeout: float = 600):
    from orchestrator.deploying.sync import sync_now
    queued = sync_now(services, app)

    def ended():
        d = services.projections.app(app).deployments.get(queued.deployment_id)
        return d if d and d.terminal else None
    d = wait(ended, 0.02, timeout, f"{app}'s deployment")
    if d.status != "success":
        raise RuntimeError(f"{app}: {d.status}: {d.message}")
    return d


def first_and_one_change(services, app: str, fake, change) -> dict:
    t0 = time.perf_counter()
    synced(services, app)
    first = time.perf_counter() - t0
    before = len(fake.downloads)
    change()
    t0 = time.perf_counter()
    synced(services, app)
    return {"first": first, "one": time.perf_counter() - t0,
            "downloads": fake.downloads[before:], "initial": before}


def longpoll_latency(services, fake, live: Path, samples: int) -> list[float]:
    from orchestrator.triggers.poller import Poller
    stop = threading.Event()
    thread = threading.Thread(target=Poller(services).run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait(lambda: fake.requests["files/list_folder/longpoll"] >= 1, 0.05, 60, "a longpoll")
        times = []
        for i in range(samples):
            content = f"<h1>sample {i}</h1>".encode()
            time.sleep(0.3)                     # a longpoll is waiting again
            t0 = time.perf_counter()
            fake.put("/bench/live/index.html", content)
            wait(lambda: live.exists() and live.read_bytes() == content, 0.005, 60, "live")
            times.append(time.perf_counter() - t0)
        return times
    finally:
        stop.set()
        thread.join(10)


def bench(base: Path, args) -> dict:
    from orchestrator.config.settings import load_config
    from orchestrator.runtime.embedded_redis import start_redis
    from orchestrator.runtime.processes import terminate
    from orchestrator.runtime.services import Services

    files = folder(args.files)
    with FakeDropbox() as dbx, FakeGraph() as graph:
        # Before anything imports the dropbox SDK, which reads its hosts once.
        os.environ.update(dbx.hosts, REQUESTS_CA_BUNDLE=dbx.ca_bundle)
        for name, content in files.items():
            dbx.put(f"/bench/site/{name}", content)
            graph.put(graph.business_drive_id, f"bench/site/{name}", content)
        dbx.put("/bench/live/index.html", b"<h1>start</h1>")
        credentials = {"app_key": dbx.app_key, "app_secret": dbx.app_secret,
                       "refresh_token": dbx.refresh_token}
        sources = {
            "dropbox": {"type": "dropbox", "path": "/bench/site", "poll_interval": "1h",
                        "longpoll": False, **credentials},
            "onedrive": {"type": "onedrive", "path": "bench/site", "tenant": "bench.example",
                         "client_id": graph.client_id, "client_secret": graph.client_secret,
                         "drive_id": graph.business_drive_id, "authority_host": graph.base_url,
                         "graph_url": graph.graph_url, "poll_interval": "1h"},
            "live": {"type": "dropbox", "path": "/bench/live", "poll_interval": "1h", **credentials}}
        redis_proc, redis_url = start_redis(base / "redis")
        worker = None
        try:
            cfg = write_config(base, redis_url, sources)
            worker = start_worker(cfg, redis_url, base / "worker.log", "--concurrency", "2")
            services = Services.build(load_config(cfg))
            r = {"dropbox": first_and_one_change(
                    services, "dropbox", dbx,
                    lambda: dbx.put("/bench/site/pkg07/module_00007.js", b"// changed\n")),
                 "onedrive": first_and_one_change(
                    services, "onedrive", graph,
                    lambda: graph.put(graph.business_drive_id, "bench/site/pkg07/module_00007.js",
                                      b"// changed\n"))}
            synced(services, "live")
            r["latency"] = longpoll_latency(services, dbx, base / "sites" / "live" / "index.html",
                                            args.samples)
            return r
        finally:
            if worker:
                terminate(worker)
            terminate(redis_proc)


def report(n: int, r: dict) -> None:
    rows = []
    for cloud in ("dropbox", "onedrive"):
        c = r[cloud]
        rate = c["initial"] / c["first"]
        rows += [(f"{cloud}: first sync of {n:,} files", f"{rate:,.0f} files/s",
                  f"Kudu ~{KUDU_FILES_PER_SECOND:.0f} files/s", f"{rate / KUDU_FILES_PER_SECOND:,.0f}x",
                  "", ""),
                 (f"  first sync, wall (list + {c['initial']:,} downloads + deploy)", ms(c["first"])),
                 (f"{cloud}: one changed file: downloads", str(len(c["downloads"])), "", "",
                  "exactly 1", verdict(len(c["downloads"]) == 1)),
                 ("  one changed file, wall sync -> live", ms(c["one"]))]
    lat = r["latency"]
    rows += [(f"dropbox change-to-live via longpoll, p50 ({len(lat)} changes)", ms(pct(lat, .5)),
              "", "", "<= 1.5 s", verdict(pct(lat, .5) <= 1.5)),
             ("  p90 / max", f"{ms(pct(lat, .9))} / {ms(max(lat))}")]
    console.print(results_table(f"Sluice cloud-folder benchmark ({os.cpu_count()} cores)",
                                ("measure", "sluice", "baseline", "ratio", "target", "verdict"), rows))
    console.print("Kudu's figure is its documented pace against the real Dropbox; ours is against "
                  "a local fake, so it measures Sluice's own cost, not Dropbox's latency.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sluice-cloud-"))
    try:
        results = bench(base, args)
    finally:
        subprocess.run(["rm", "-rf", str(base)])
    report(args.files, results)


if __name__ == "__main__":
    main()
