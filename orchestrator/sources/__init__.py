"""Source adapters, one module per kind, behind the Protocol in base.py."""
import hashlib
from pathlib import Path

from ..config import AppConfig
from .base import Source


def source_for(app: AppConfig, data_dir: Path) -> Source:
    if app.source.type == "git":
        from .git import GitSource
        return GitSource(app.source, data_dir / "cache" / "git")
    raise NotImplementedError(app.source.type)


def fingerprint(app: AppConfig) -> str:
    """Changes when the source settings change, so a cursor or a base snapshot taken under
    other settings (another branch, another subfolder) is not reused."""
    settings = app.source.model_dump_json(exclude={"poll_interval"})
    return hashlib.sha256(settings.encode()).hexdigest()[:16]
