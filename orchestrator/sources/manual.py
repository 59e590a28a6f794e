"""The source of an app that is not on continuous deployment: there is none. Its releases
come from `sluice import` (with the snapshot already built), never from a fetch."""
from __future__ import annotations

from orchestrator.core.errors import PermanentError
from orchestrator.sources.base import Change, SnapshotWriter


class ManualSource:
    def describe(self) -> str:
        return "manual (not on continuous deployment)"

    def latest(self, cursor: str | None) -> Change | None:
        raise self._nothing()

    def fetch(self, revision: str, into: SnapshotWriter) -> None:
        raise self._nothing()

    def _nothing(self) -> PermanentError:
        return PermanentError("the app has no source (it is not on continuous deployment): "
                              "deploy it with `sluice import`, or configure a source")
