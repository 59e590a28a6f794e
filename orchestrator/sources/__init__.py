"""Source adapters, one module per kind, behind the Protocol in base.py."""
import hashlib
from pathlib import Path

from orchestrator.config.settings import AppConfig
from orchestrator.config.sources import DropboxSourceConfig, ManualSourceConfig, OneDriveSourceConfig
from orchestrator.sources.base import Source


def source_for(app: AppConfig, data_dir: Path) -> Source:
    """GitHub, Bitbucket and Azure DevOps sources are repositories that also send webhooks."""
    config = app.source
    if isinstance(config, ManualSourceConfig):
        from orchestrator.sources.manual import ManualSource
        return ManualSource()
    if isinstance(config, DropboxSourceConfig):
        from orchestrator.sources.dropbox import DropboxSource
        return DropboxSource(config, data_dir / "cache" / "dropbox")
    if isinstance(config, OneDriveSourceConfig):
        from orchestrator.sources.onedrive import OneDriveSource
        return OneDriveSource(config, data_dir / "cache" / "onedrive")
    if config.scm == "hg":
        from orchestrator.sources.hg import HgSource
        return HgSource(config, data_dir / "cache" / "hg")
    from orchestrator.sources.git import GitSource
    return GitSource(config, data_dir / "cache" / "git")


# Settings that change how or how often a source is reached, not what it holds.
NOT_IDENTITY = {"poll_interval", "username", "password", "ssh_key", "secret", "basic_auth", "header",
                "app_secret", "refresh_token", "access_token", "client_secret", "longpoll"}


def fingerprint(app: AppConfig) -> str:
    """Changes when the source settings change, so a cursor or a base snapshot taken under
    other settings (another branch, another subfolder) is not reused."""
    settings = app.source.model_dump_json(exclude=NOT_IDENTITY)
    return hashlib.sha256(settings.encode()).hexdigest()[:16]
