import random

from orchestrator.core.backoff import backoff_delay
from orchestrator.core.urls import sanitize_url
from orchestrator.releases.ignore import IgnoreRules
from orchestrator.sources.base import strip_prefix


def test_git_folders_and_local_settings_are_ignored_anywhere():
    rules = IgnoreRules()
    assert rules.ignored("local.settings.json") and rules.ignored("fn/local.settings.json")
    assert rules.ignored(".git/config") and rules.ignored("vendor/lib/.git/HEAD")
    assert not rules.ignored("host.json") and not rules.ignored(".gitignore")


def test_funcignore_uses_gitignore_syntax_including_negation():
    rules = IgnoreRules("*.log\n!keep.log\ntests/\n/root-only.txt\n")
    assert rules.ignored("a.log") and rules.ignored("deep/b.log") and not rules.ignored("keep.log")
    assert rules.ignored("tests/t.py") and rules.ignored("fn/tests/t.py")
    assert rules.ignored("root-only.txt") and not rules.ignored("fn/root-only.txt")


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    rng = random.Random(7)
    delays = [backoff_delay(n, 2.0, 60.0, rng) for n in range(1, 9)]
    ceilings = [2, 4, 8, 16, 32, 60, 60, 60]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))


def test_files_outside_the_configured_subfolder_are_dropped():
    assert strip_prefix("api/host.json", "api") == "host.json"
    assert strip_prefix("apiary/x", "api") is None and strip_prefix("x", "") == "x"


def test_credentials_never_survive_in_a_shown_url():
    assert sanitize_url("https://user:tok3n@host/r.git") == "https://host/r.git"
    assert sanitize_url("https://host/r.git") == "https://host/r.git"
