"""Secrets the config took from the environment (`${NAME}`), kept out of what Sluice writes
about a deployment: each value becomes `${NAME}` again in events, deployment logs and the
worker's log lines, so a build that echoes a token or a URL that embeds one shows its name.

Which substituted values count is the config loader's call (config/settings.py); this
module only says which names look secret and does the replacing.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

# Shorter values are ordinary text ("1", "yes", "dev"): masking them would garble every line.
MIN_LENGTH = 4
# A key or variable named like one of these holds a secret (api.token, source.password,
# app_secret, ssh_key, GITHUB_TOKEN, REDIS_PASSWORD...).
_SECRET_NAME = re.compile(r"(?i)token|secret|passw(or)?d|passphrase|(^|_)pass($|_)|key|credential"
                          r"|authori[sz]ation|cookie")


def says_secret(name: str) -> bool:
    """Whether a config key or an environment variable's name says it holds a secret."""
    return bool(_SECRET_NAME.search(name))


def mask(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with every secret value (name -> value) replaced by `${NAME}`, longest first,
    so a secret that holds a shorter one is masked whole."""
    if not secrets or not text:
        return text
    pattern, names = _pattern(tuple(sorted(secrets.items())))
    return pattern.sub(lambda m: "${" + names[m.group(0)] + "}", text) if pattern else text


@lru_cache(maxsize=32)
def _pattern(secrets: tuple[tuple[str, str], ...]) -> tuple[re.Pattern | None, dict[str, str]]:
    names = {value: name for name, value in secrets if len(value) >= MIN_LENGTH}
    if not names:
        return None, names
    values = sorted(names, key=len, reverse=True)       # one pass: nothing masked twice
    return re.compile("|".join(map(re.escape, values))), names


class MaskingFilter(logging.Filter):
    """Masks records (message and traceback) with the secrets it is given; a worker sets
    them from the config it read for the task at hand."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: Mapping[str, str] = {}

    def watch(self, logger: logging.Logger) -> None:
        """Mask what `logger`'s handlers write, whichever logger made the record (httpx's
        request lines name the URL); call again after its handlers were replaced."""
        for handler in logger.handlers:
            if self not in handler.filters:
                handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = mask(record.getMessage(), self.secrets), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = mask(record.exc_text, self.secrets)
        return True


def mask_fields(fields: Mapping[str, Any], secrets: Mapping[str, str],
                keep: Collection[str] = ()) -> dict[str, Any]:
    """An event's fields with their text (strings, lists of strings) masked, but the fields
    named in `keep`."""
    def masked(value: Any) -> Any:
        if isinstance(value, str):
            return mask(value, secrets)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return [mask(item, secrets) for item in value]
        return value
    return {name: value if name in keep else masked(value) for name, value in fields.items()}
