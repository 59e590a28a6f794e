"""Source adapters, one module per kind, behind the Protocol in base.py."""
from pathlib import Path

from ..config import AppConfig
from .base import Source


def source_for(app: AppConfig, data_dir: Path) -> Source:
    if app.source.type == "git":
        from .git import GitSource
        return GitSource(app.source, data_dir / "cache" / "git")
    raise NotImplementedError(app.source.type)
