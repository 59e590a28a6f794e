"""Build layers: what one build step added to a snapshot, cached under a key of everything
that determines it, so a deployment whose dependencies did not change runs no build.

  {data_dir}/store/layers/<key>.json    the layer, as a Manifest's canonical JSON
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Mapping

import orjson

from orchestrator.building.plan import TARGET, WHOLE_TREE, BuildStep
from orchestrator.building.scratch import collect_output, overlay, scratch_copy
from orchestrator.config.steps import BuildConfig
from orchestrator.core.files import write_whole
from orchestrator.releases.integrity import Quarantine
from orchestrator.releases.snapshots import Manifest, SnapshotStore

_TREE = WHOLE_TREE[0]       # the input standing for every file of the source
KEY_SCHEMA = 1              # raised when what goes into a key changes: old layers then miss
_KEY = re.compile(r"^[0-9a-f]{64}$")

__all__ = ["TARGET", "Digest", "LayerCache", "collect_output", "layer_key", "overlay",
           "scratch_copy"]


READ_LAYERS = 64        # layers a process keeps as read, by path: (file stamp, layer)
_READ: dict[str, tuple[tuple[int, int, int], Manifest]] = {}


def _stamp(path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


class LayerCache:
    def __init__(self, store: SnapshotStore):
        self.store = store
        self.root = store.root / "layers"
        self.root.mkdir(exist_ok=True)

    def get(self, key: str) -> Manifest | None:
        """The layer, or None: never stored, unreadable, or naming a blob the store no
        longer holds (collected, quarantined), which the build must then make again. A layer
        read before by this process is not read nor checked again while its file is the same
        and nothing is quarantined: the store collects a layer's blobs only with the layer."""
        path = self._path(key)
        try:
            stamp = _stamp(path)
        except OSError:
            return None
        known = _READ.get(str(path))
        if known is not None and known[0] == stamp and not Quarantine(self.store).entries():
            return known[1]
        try:
            layer = Manifest.parse(path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not all(os.path.exists(self.store.blob_path(e.sha256)) for e in layer.files.values()):
            return None
        _READ[str(path)] = (stamp, layer)
        while len(_READ) > READ_LAYERS:
            _READ.pop(next(iter(_READ)))
        return layer

    def put(self, key: str, layer: Manifest) -> None:
        write_whole(self._path(key), layer.canonical().decode())

    def keys(self) -> set[str]:
        return {p.stem for p in self.root.glob("*.json") if _KEY.match(p.stem)}

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _path(self, key: str):
        if not _KEY.match(key):
            raise ValueError(f"not a layer key: {key!r}")
        return self.root / f"{key}.json"


def layer_key(step: BuildStep, config: BuildConfig, files: Mapping[str, bytes | str],
              tool_version: str, platform: str) -> str:
    """sha256 over what determines a step's output: its command, its inputs (`files`: an
    input's bytes, or for WHOLE_TREE the source snapshot's id under "*", else every entry
    given), the tool's version, the platform and the build's env. Nothing else: another
    file's change must not cost a rebuild."""
    doc = {"schema": KEY_SCHEMA, "step": step.name, "command": step.command,
           "output": step.output, "inputs": {name: _input(name, files) for name in step.inputs},
           "tool": tool_version, "platform": platform, "env": sorted(config.env.items())}
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _input(name: str, files: Mapping[str, bytes | str]) -> str | None:
    if name == _TREE and _TREE not in files:
        tree = hashlib.sha256()
        for path in sorted(files):
            tree.update(orjson.dumps([path, _identity(files[path])]))
        return tree.hexdigest()
    return _identity(files[name]) if name in files else None


class Digest(str):
    """An input's sha256, known without reading it (a store blob's name): the same identity
    as its bytes hashed, so a key does not change with how its input was given."""


def _identity(value: bytes | str) -> str:
    """Bytes are hashed; text is already an identity (a snapshot id, a blob's sha256)."""
    if isinstance(value, Digest):
        return f"sha256:{value}"
    return f"sha256:{hashlib.sha256(value).hexdigest()}" if isinstance(value, bytes) else f"id:{value}"
