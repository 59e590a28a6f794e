"""`${NAME}` in the config's strings: an environment variable's value, put in when the
config is read (config/settings.py reports one not set, naming where). Apart from the
config's models, for the short way of `sluice apps`, which keeps the Redis URL as written."""
from __future__ import annotations

import re
from collections.abc import Mapping

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expanded(text: str, env: Mapping[str, str]) -> str:
    """`text` with each ${NAME} replaced by its value; KeyError naming one not set."""
    return ENV_REF.sub(lambda m: env[m.group(1)], text)
