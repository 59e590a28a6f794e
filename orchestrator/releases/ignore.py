"""What is never deployed: `.git/`, `local.settings.json` and the `.funcignore` patterns."""
from __future__ import annotations

import pathspec

ALWAYS_IGNORED = [".git/", "local.settings.json"]


class IgnoreRules:
    def __init__(self, funcignore: str = ""):
        lines = ALWAYS_IGNORED + funcignore.splitlines()
        self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def ignored(self, path: str) -> bool:
        return self._spec.match_file(path)
