"""Zip deploy benchmark (issue 17): a 5,000-file app posted to /scm/APP/api/zipdeploy of a
real API (uvicorn on loopback) with a real `sluice worker` and redis-server, beside `unzip`
of the same file into an empty folder, measured in the same run.

    .venv/bin/python bench/zipdeploy.py [--files 5000] [--runs 3]

(a) Upload to live: a synchronous zip deploy (its answer comes once the zip is live) of a
    zip of --files files (2 KiB each on average, in 50 folders), each run to an app of its
    own with content of its own (every blob new), beside `unzip -q` of the same zip into an
    empty folder; medians, alternated. The ratio is printed.
(b) A re-upload with one file changed: the store's blobs written and the release's files
    that are not the same inode as in the release before (target: 1 each), and the time.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from rich.console import Console  # noqa: E402

from bench.common import ms, results_table, sluice_running, verdict, wait  # noqa: E402

PASSWORD = "bench-pass-1"


def app_files(count: int, seed: str) -> dict[str, bytes]:
    return {f"src/m{n % 50:02d}/file{n:05d}.txt":
            (f"{seed} {n}\n".encode() * (20 + n % 200)) for n in range(count)}


def zip_bytes(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return out.getvalue()


def serve(services) -> tuple[str, uvicorn.Server]:
    from orchestrator.api import create_app
    from orchestrator.api.server import server_config
    server = uvicorn.Server(server_config(create_app(services), log_level="warning", lifespan="off"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)     # TCP_NODELAY:
    # asyncio sets it only on sockets that name IPPROTO_TCP; without it each answer waited ~40 ms
    sock.bind(("127.0.0.1", 0))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    wait(lambda: server.started, 0.05, 10, "the API")
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def post(base: str, app: str, data: bytes) -> float:
    started = time.perf_counter()
    answer = httpx.post(f"{base}/scm/{app}/api/zipdeploy", content=data, auth=("deployer", PASSWORD),
                        timeout=600)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"zip deploy of {app}: {answer.status_code} {answer.text[:500]}")
    return elapsed


def unzip_time(path: Path, scratch: Path) -> float:
    target = scratch / "unzipped"
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(["unzip", "-q", str(path), "-d", str(target)], check=True)
    return time.perf_counter() - started


def blob_count(data_dir: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(data_dir / "store" / "blobs"))


def inodes(release: Path) -> dict[str, int]:
    return {str(p.relative_to(release)): p.stat().st_ino for p in release.rglob("*") if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from orchestrator.access.credentials import set_credentials
    console = Console()
    with tempfile.TemporaryDirectory(prefix="sluice-zipbench-") as tmp:
        base = Path(tmp)
        apps = {f"app{n}": {"layout": "site", "target": str(base / "sites" / f"app{n}")}
                for n in range(args.runs + 1)}
        with sluice_running(base, apps) as services:
            for name in apps:
                set_credentials(services, name, "deployer", PASSWORD)
            url, server = serve(services)
            try:
                rows = measure(args, base, url)
            finally:
                server.should_exit = True
    console.print(results_table("Zip deploy (issue 17)", ("what", "Sluice", "baseline", "target"), rows))


def measure(args, base: Path, url: str) -> list[tuple]:
    uploads, unzips = [], []
    last_zip = b""
    for run in range(args.runs):
        files = app_files(args.files, f"run{run}")
        last_zip = zip_bytes(files)
        path = base / f"run{run}.zip"
        path.write_bytes(last_zip)
        unzips.append(unzip_time(path, base))
        uploads.append(post(url, f"app{run}", last_zip))
    up, unz = statistics.median(uploads), statistics.median(unzips)
    rows: list[tuple] = [(f"upload to live, {args.files} files ({len(last_zip) // 1024} KiB zip)",
                          ms(up), f"unzip {ms(unz)}", f"ratio {up / unz:.2f}x")]
    rows.extend(one_file_change(args, base, url))
    return rows


def one_file_change(args, base: Path, url: str) -> list[tuple]:
    app = f"app{args.runs}"
    files = app_files(args.files, "change")
    post(url, app, zip_bytes(files))
    target = base / "sites" / app
    before_release, before_blobs = Path(os.path.realpath(target)), blob_count(base / "data")
    before = inodes(before_release)
    files["src/m07/file00007.txt"] = b"changed\n"
    took = post(url, app, zip_bytes(files))
    after = inodes(Path(os.path.realpath(target)))
    written = sum(1 for p, ino in after.items() if before.get(p) != ino)
    new_blobs = blob_count(base / "data") - before_blobs
    return [("re-upload, one file changed: blobs written to the store", str(new_blobs), "",
             f"1 {verdict(new_blobs == 1)}"),
            ("re-upload, one file changed: release files not shared with the last", str(written),
             "", f"1 {verdict(written == 1)}"),
            ("re-upload, one file changed: upload to live", ms(took), "", "")]


if __name__ == "__main__":
    main()
