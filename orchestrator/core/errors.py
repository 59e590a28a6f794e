"""The error tree, grouped by what should happen next (docs/architecture.md, "Errors")."""


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose; its message is meant for people."""


class ConfigError(SluiceError):
    """Bad configuration: refuse to start, saying which key and why."""


class TransientError(SluiceError):
    """Worth retrying with backoff: network trouble, 5xx, 429, a busy lease."""


class PermanentError(SluiceError):
    """Retrying cannot help; the deployment fails with this message."""


class AuthenticationFailed(PermanentError):
    pass


class RevisionNotFound(PermanentError):
    pass


class InvalidAppLayout(PermanentError):
    pass


class ZipRefused(InvalidAppLayout):
    """A zip the zip deploy API does not take (a hostile, encrypted or oversized entry, or no
    zip at all), naming the entry: nothing of it reached a release. `status`: 400, or 413
    for a zip over a size limit."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class NotFound(PermanentError):
    """No such app or deployment (the API answers 404)."""


class BuildFailed(PermanentError):
    """A build cannot run or did not succeed (a bad .deployment or package.json, a missing
    tool, a failing command): the same inputs fail the same way, so it is not retried."""


class BeforeSwitchFailed(PermanentError):
    """The app's before_switch check failed on the new release: nothing was switched."""


class ActivationFailed(PermanentError):
    """An activate action failed after the switch (on_failure keeps or rolls back)."""


class HealthCheckFailed(PermanentError):
    """The app's health probe did not prove the new release healthy in time, or failed
    while it had to stay healthy (on_failure keeps or rolls back)."""


class StoreError(SluiceError):
    pass


class ConcurrencyError(StoreError):
    """Someone appended first: reload and retry the command."""


class ArchiveCorrupt(StoreError):
    """An archived event no longer matches its checksum (or is not one): the file and line
    are named; the history is not read past it."""


class EventSchemaTooNew(StoreError):
    """An event recorded by a newer Sluice, in a shape this code cannot read."""
