"""`make run`'s parts agree: config/sluice.yaml signals the pidfile the Makefile gives the
example host and probes the port that host listens on."""
from __future__ import annotations

import re
from pathlib import Path

from orchestrator.config.settings import load_config
from orchestrator.config.steps import SignalAction

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_config_activates_the_host_make_run_starts_and_checks_the_release_it_serves():
    app = load_config(ROOT / "config" / "sluice.yaml").apps["hello"]
    pidfile = re.search(r"^EXAMPLE_HOST_PIDFILE := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    port = re.search(r'"--port", type=int, default=(\d+)', (ROOT / "examples/host/serve.py").read_text())

    assert pidfile and port
    signals = [(a.signal.pidfile, a.signal.signal) for a in app.activate if isinstance(a, SignalAction)]
    assert len(app.activate) == 1 and signals == [(Path(pidfile.group(1)), "HUP")]
    assert app.health is not None and app.health.url == f"http://127.0.0.1:{port.group(1)}/health"
    assert app.health.body_contains == "{deployment}" and app.on_failure == "rollback"
