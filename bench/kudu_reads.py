"""Kudu read access benchmark (issue 17): the live release of a 5,000-file app as a zip
(`GET /scm/APP/api/zip/site/wwwroot/` of a real API on loopback, real worker and Redis)
beside `zip -qry` of the same release folder, and /healthz while such zips are built and
sent beside /healthz idle, measured in the same run.

    .venv/bin/python bench/kudu_reads.py [--files 5000] [--runs 3]

(a) Download: medians of --runs downloads of the whole release as a zip, alternated with
    `zip -qry` (links kept, as Sluice keeps them) of the release into a scratch file.
(b) /healthz p50 / p99 polled every 20 ms while --runs downloads run back to back, beside
    /healthz polled for as long with nothing else running: the zip is built off the event
    loop, so the two should be alike.
(c) One file through vfs (`GET /api/vfs/site/wwwroot/{path}`), median of 50, beside
    /healthz's median in the same loop.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402

from bench.common import ms, pct, poll_health, results_table, sluice_running  # noqa: E402
from bench.zipdeploy import PASSWORD, app_files, post, serve, zip_bytes  # noqa: E402

AUTH = ("deployer", PASSWORD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from orchestrator.access.credentials import set_credentials
    with tempfile.TemporaryDirectory(prefix="sluice-kudureads-") as tmp:
        base = Path(tmp)
        apps = {"app": {"layout": "site", "target": str(base / "sites" / "app")}}
        with sluice_running(base, apps) as services:
            set_credentials(services, "app", "deployer", PASSWORD)
            url, server = serve(services)
            try:
                post(url, "app", zip_bytes(app_files(args.files, "reads")))
                rows = measure(args, base, url)
            finally:
                server.should_exit = True
    Console().print(results_table("Kudu read access (issue 17)", ("what", "Sluice", "baseline", "note"), rows))


def measure(args, base: Path, url: str) -> list[tuple]:
    release = Path(os.path.realpath(base / "sites" / "app"))
    downloads, zips, size = [], [], 0
    for _ in range(args.runs):
        took, size = download(url)
        downloads.append(took)
        zips.append(zip_folder(release, base / "baseline.zip"))
    down, base_zip = statistics.median(downloads), statistics.median(zips)
    busy = poll_health(url, lambda: [download(url) for _ in range(args.runs)], None)
    idle = poll_health(url, None, sum(downloads))
    file_times, health_times = one_file(url)
    return [
        (f"zip of the live release, {args.files} files ({size // 1024} KiB)", ms(down),
         f"zip -qry {ms(base_zip)}", f"ratio {down / base_zip:.2f}x"),
        ("/healthz p50 / p99 while zips download", f"{ms(pct(busy, 0.5))} / {ms(pct(busy, 0.99))}",
         f"idle {ms(pct(idle, 0.5))} / {ms(pct(idle, 0.99))}", f"{len(busy)} / {len(idle)} polls"),
        ("one file through vfs, median of 50", ms(statistics.median(file_times)),
         f"/healthz {ms(statistics.median(health_times))}", ""),
    ]


def download(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    answer = httpx.get(f"{url}/scm/app/api/zip/site/wwwroot/", auth=AUTH, timeout=600)
    took = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"zip download: {answer.status_code} {answer.text[:500]}")
    return took, len(answer.content)


def zip_folder(release: Path, out: Path) -> float:
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(["zip", "-qry", str(out), "."], cwd=release, check=True)
    return time.perf_counter() - started


def one_file(url: str) -> tuple[list[float], list[float]]:
    files, health = [], []
    with httpx.Client(timeout=60, auth=AUTH) as client:
        for _ in range(50):
            started = time.perf_counter()
            client.get(f"{url}/scm/app/api/vfs/site/wwwroot/src/m07/file00007.txt").raise_for_status()
            files.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.get(f"{url}/healthz").raise_for_status()
            health.append(time.perf_counter() - started)
    return files, health


if __name__ == "__main__":
    main()
