"""What a release must look like before it may go live: no path deeper than MAX_DEPTH, and
for layout functions, a function app's files."""
from __future__ import annotations

import json

from orchestrator.core.errors import InvalidAppLayout
from orchestrator.releases.snapshots import Manifest, SnapshotStore

# Levels of a release path (folders and the entry). Linux takes paths up to PATH_MAX, 4096
# bytes: 256 levels of ordinary names (15 bytes and a '/') fill it, so a deeper tree could not
# be opened by its absolute path, by Sluice or by the app. No real app comes near (nested
# node_modules stay under 100), and recursive walks in other code (Python's stop at 1,000
# frames) stay far from their limits.
MAX_DEPTH = 256
SHOWN = 160         # characters of a refused path shown at each end


def validate(layout: str, manifest: Manifest, store: SnapshotStore,
             since: Manifest | None = None) -> None:
    """`since`: a manifest validated before, of which only the paths that differ need their
    depth checked again (the function app's files are read whatever changed)."""
    for path in (manifest.changed(since) if since is not None else (*manifest.files, *manifest.links)):
        check_depth(path)
    if layout != "functions":
        return
    if "host.json" not in manifest.files:
        raise InvalidAppLayout("host.json is missing at the root of the function app")
    _json_file(store, manifest, "host.json")
    for folder in manifest.folders():
        path = f"{folder}/function.json"
        if "/" not in folder and path in manifest.files:
            doc = _json_file(store, manifest, path)
            if not isinstance(doc, dict) or not isinstance(doc.get("bindings"), list):
                raise InvalidAppLayout(f"{path}: must be a JSON object with a 'bindings' list")


def _json_file(store: SnapshotStore, manifest: Manifest, path: str):
    data = store.read_blob(manifest.files[path].sha256)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidAppLayout(f"{path}: not valid JSON ({exc})") from None


def check_depth(path: str) -> None:
    """Refuse a path (relative, '/'-separated) deeper than a release may hold, naming it."""
    depth = path.count("/") + 1
    if depth > MAX_DEPTH:
        raise InvalidAppLayout(f"{_shortened(path)!r} is {depth} levels deep; a release "
                               f"holds paths at most {MAX_DEPTH} deep (Linux's PATH_MAX "
                               "is 4096 bytes)")


def _shortened(path: str) -> str:
    return path if len(path) <= 2 * SHOWN else f"{path[:SHOWN]}…{path[-SHOWN:]}"
