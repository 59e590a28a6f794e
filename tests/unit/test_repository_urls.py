"""Which URLs Kudu's generic deploy hook may name for an app's source."""
import pytest

from orchestrator.sources.repository_urls import same_repository


@pytest.mark.parametrize("given, configured", [
    ("https://user:token@GitHub.com/owner/repo.git", "https://github.com/owner/repo"),
    ("https://github.com/owner/repo/", "https://github.com:443/owner/repo.git"),
    ("git@github.com:owner/repo.git", "ssh://git@github.com/owner/repo"),
    ("https://github.com/owner/repo#0123abcd", "https://github.com/owner/repo"),
    ("file:///srv/repos/app/.git", "/srv/repos/app"),
])
def test_urls_differing_only_in_credentials_case_of_host_port_or_suffix_name_the_same_repository(
        given, configured):
    assert same_repository(given, configured)


@pytest.mark.parametrize("given, configured", [
    ("https://github.com/owner/other", "https://github.com/owner/repo"),
    ("https://gitlab.com/owner/repo", "https://github.com/owner/repo"),
    ("http://github.com/owner/repo", "https://github.com/owner/repo"),
    ("https://github.com:8443/owner/repo", "https://github.com/owner/repo"),
    ("https://github.com/Owner/repo", "https://github.com/owner/repo"),
    ("/srv/repos/app2", "/srv/repos/app"),
])
def test_another_scheme_host_port_or_path_is_another_repository(given, configured):
    assert not same_repository(given, configured)
