"""Every figure of issue 16 ("cost proportional to the change"), in one run: each part is a
bench of its own (bench/scale_*.py, each printing its figures beside the baselines it
measures in the same run), run here one after another so they do not share the machine.

    .venv/bin/python bench/scale.py [--only tree,apps,...]

  tree     one-file change at 1k / 20k / 50k files, beside cp -al and an in-place rsync -a
  apps     1,000 apps' first deployments vs as many deployments of one app
  fleet    /api/apps with 50 clients vs /healthz; sluice apps; the first /metrics scrape
  metrics  the first /metrics scrape of 1,000 apps never scraped, texts kept by the workers
  history  sluice deployments at 5,000 deployments vs 10; Redis memory per app
  cli      sluice --help and sluice apps cold vs python -c pass
  heads    a local head check vs git ls-remote
  hg       a one-file Mercurial change vs Git's on the same tree
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = {
    "tree": ["scale_tree.py"],
    "apps": ["scale_apps.py"],
    "fleet": ["scale_fleet.py"],
    "metrics": ["scale_metrics.py"],
    "history": ["scale_history.py"],
    "cli": ["scale_cli.py"],
    "heads": ["head_checks.py", "--local-only"],
    "hg": ["scale_hg.py"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run, comma-separated")
    chosen = parser.parse_args().only.split(",")
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)} (known: {', '.join(PARTS)})")
    failed = []
    for part in chosen:
        script, *options = PARTS[part]
        if not (HERE / script).exists():
            print(f"\n== {part}: {script} is not there yet")
            failed.append(part)
            continue
        print(f"\n== {part}: {script} {' '.join(options)}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *options], cwd=HERE.parent)
        print(f"({part}: {time.monotonic() - started:.0f} s, exit {done.returncode})", flush=True)
        if done.returncode:
            failed.append(part)
    if failed:
        print(f"\nparts that did not run to the end: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
