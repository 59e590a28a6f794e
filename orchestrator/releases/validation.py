"""What a release must look like before it may go live (layout: functions)."""
from __future__ import annotations

import json

from orchestrator.core.errors import InvalidAppLayout
from orchestrator.releases.snapshots import Manifest, SnapshotStore


def validate(layout: str, manifest: Manifest, store: SnapshotStore) -> None:
    if layout != "functions":
        return
    if "host.json" not in manifest.files:
        raise InvalidAppLayout("host.json is missing at the root of the function app")
    _json_file(store, manifest, "host.json")
    for path in manifest.files:
        parts = path.split("/")
        if len(parts) == 2 and parts[1] == "function.json":
            doc = _json_file(store, manifest, path)
            if not isinstance(doc, dict) or not isinstance(doc.get("bindings"), list):
                raise InvalidAppLayout(f"{path}: must be a JSON object with a 'bindings' list")


def _json_file(store: SnapshotStore, manifest: Manifest, path: str):
    data = store.read_blob(manifest.files[path].sha256)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidAppLayout(f"{path}: not valid JSON ({exc})") from None
