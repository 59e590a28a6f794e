"""Which config file a process reads, apart from the config's models: finding it is every
`sluice` command's first step (a command's `--help` too), and costs no pydantic or YAML."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONFIG = Path("config/sluice.yaml")


def config_file(env: Mapping[str, str] | None = None) -> Path:
    """The config file this process reads: $SLUICE_CONFIG (the CLI's --config sets it for
    its children too), else the default."""
    env = os.environ if env is None else env
    return Path(env.get("SLUICE_CONFIG") or DEFAULT_CONFIG)
