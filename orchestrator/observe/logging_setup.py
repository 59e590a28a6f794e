"""How every Sluice process logs: `--log-format text` (the default) or `json`.

JSON is one object per line, so a log shipper needs no multi-line rules:
  {"ts": "2024-05-01T12:00:01.234Z", "level": "INFO", "logger": "sluice.worker",
   "message": "hello: deployment 20240501-120001-ab12cd: DeploymentSucceeded",
   "app": "hello", "deployment": "20240501-120001-ab12cd", "event": "DeploymentSucceeded"}
Fields passed with `extra=` (app, deployment, ...) become keys of their own; a traceback is
the `exc` key.

Secrets stay out of logs whatever the format: credentials in URLs (`https://user:pw@host`),
Authorization header values and parameters like `access_token=...` are masked in every line,
and extra fields whose names say password, secret, token, ... are replaced by `***`.

The choice travels to child processes (`sluice up`'s worker, poller, API) through the
environment: SLUICE_LOG_FORMAT and SLUICE_LOG_LEVEL.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time

FORMATS = ("text", "json")
FORMAT_ENV, LEVEL_ENV = "SLUICE_LOG_FORMAT", "SLUICE_LOG_LEVEL"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"

_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s\"']+@")
# any parameter whose name ends in one of these (`api_token=`, `client_secret=`, `apikey=`)
_KEY_VALUE = re.compile(r"(?i)\b([a-z0-9_.-]*(?:token|secret|password|passwd|authorization|api_?key"
                        r"|private_?key)|sig|signature)=[^&\s\"',;]+")
_AUTH_VALUE = re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(basic|bearer|token)\s+[^\s\"',;]+")
_SECRET_NAME = re.compile(r"(?i)(^|_)pass(word|wd|phrase)?($|_)|secret|token|authori[sz]ation"
                          r"|credential|api_?key|private_?key|cookie")
# what every LogRecord has; anything else on a record came from `extra=` (but uvicorn's
# color_message, the message again with terminal colours)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}


def redact(text: str) -> str:
    """The text with URL credentials, Authorization header values and secret query
    parameters (`access_token=...`, `client_secret=...`) masked."""
    text = _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
    text = _KEY_VALUE.sub(rf"\1={MASK}", text)
    return _AUTH_VALUE.sub(rf"\1\2 {MASK}", text)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": _iso(record.created), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc.setdefault(key, MASK if _SECRET_NAME.search(key) else value)
        if record.exc_info:     # exc_text: as a filter left it (core/masking.py masks secrets)
            doc["exc"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(doc, default=str, ensure_ascii=False))


class _StderrHandler(logging.StreamHandler):
    """Sluice's handler: stderr as it was when logging was configured (a Celery worker later
    points sys.stderr at a logger, which must not feed back into this handler)."""

    def __init__(self):
        super().__init__(sys.stderr)


def configure(log_format: str | None = None, level: str | None = None) -> str:
    """Set up the root logger for this process (again, if called twice); returns the format.
    Unset arguments come from SLUICE_LOG_FORMAT / SLUICE_LOG_LEVEL, else text and INFO."""
    chosen = (log_format or os.environ.get(FORMAT_ENV) or "text").lower()
    if chosen not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {chosen!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel((level or os.environ.get(LEVEL_ENV) or "INFO").upper())
    logging.captureWarnings(True)       # warnings become records too (logger py.warnings)
    return chosen


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
