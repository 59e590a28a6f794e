from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from orchestrator.config.settings import load_config
from orchestrator.config.sources import SourceConfig
from orchestrator.config.status_repositories import Repository, named_by, status_repository
from orchestrator.core.errors import ConfigError


def git(url: str, kind: str = "git", **more) -> SourceConfig:
    return TypeAdapter(SourceConfig).validate_python({"type": kind, "url": url, **more})


@pytest.mark.parametrize("url", ["https://github.com/octo/hello.git", "https://github.com/octo/hello",
                                 "git@github.com:octo/hello.git", "ssh://git@github.com/octo/hello.git",
                                 "https://x-access-token:abc@github.com/octo/hello.git/"])
def test_a_git_source_on_github_names_its_owner_and_repository(url):
    assert named_by("github", git(url)) == Repository("octo/hello")


@pytest.mark.parametrize("url", ["https://bitbucket.org/team/site.git", "git@bitbucket.org:team/site.git",
                                 "https://jo@bitbucket.org/team/site"])
def test_a_git_source_on_bitbucket_names_its_workspace_and_repository(url):
    assert named_by("bitbucket", git(url)) == Repository("team/site")


@pytest.mark.parametrize("url,named", [
    ("https://dev.azure.com/contoso/Web%20Site/_git/front", Repository("Web Site/front", "contoso")),
    ("https://contoso@dev.azure.com/contoso/web/_git/front", Repository("web/front", "contoso")),
    ("git@ssh.dev.azure.com:v3/contoso/web/front", Repository("web/front", "contoso")),
    ("https://contoso.visualstudio.com/web/_git/front", Repository("web/front", "contoso")),
    ("https://contoso.visualstudio.com/DefaultCollection/web/_git/front", Repository("web/front", "contoso")),
    ("contoso@vs-ssh.visualstudio.com:v3/contoso/web/front", Repository("web/front", "contoso")),
    ("https://dev.azure.com/contoso/_git/front", Repository("front/front", "contoso")),
])
def test_a_git_source_on_azure_devops_names_its_organization_project_and_repository(url, named):
    assert named_by("azure-devops", git(url)) == named


def test_a_provider_typed_source_names_its_repository_on_any_host():
    source = git("https://git.example.com/octo/hello.git", "github", secret="s" * 16)
    assert named_by("github", source) == Repository("octo/hello")
    server = git("https://tfs.example.com/tfs/Main/web/_git/front", "azure-devops",
                 header={"name": "X-Hook", "value": "v" * 16})
    assert named_by("azure-devops", server) == Repository("web/front", "Main")


@pytest.mark.parametrize("kind,url", [
    ("github", "https://bitbucket.org/team/site.git"), ("github", "https://git.example.com/octo/hello.git"),
    ("github", "https://github.com/octo"), ("bitbucket", "https://github.com/octo/hello.git"),
    ("azure-devops", "https://dev.azure.com/contoso/web"), ("github", "/srv/repos/hello.git")])
def test_urls_of_other_hosts_or_shapes_name_no_repository_of_the_provider(kind, url):
    assert named_by(kind, git(url)) is None


def test_a_channels_own_repository_wins_and_non_git_sources_have_none():
    assert status_repository("github", "mine/fork", None, git("https://github.com/octo/hello")) == \
        Repository("mine/fork")
    hg = git("https://bitbucket.org/team/site", "hg")
    assert status_repository("bitbucket", None, None, hg) is None


# --- the config's checks --------------------------------------------------------------------

def load(tmp_path: Path, app: dict, **top) -> None:
    doc = {"data_dir": str(tmp_path / "var"), "public_url": "https://sluice.example.com", **top,
           "apps": {"hello": {"target": str(tmp_path / "site"), **app}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    load_config(tmp_path / "c.yaml", env={})


GITHUB = {"type": "github", "token": "ghp_0123456789abcdef"}


def test_an_apps_github_status_needs_a_repository_its_source_does_not_name(tmp_path):
    with pytest.raises(ConfigError, match=r"apps\.hello: notify\.0\.repository: the source's URL "
                                          r"names no github repository: set repository \(owner/name\)"):
        load(tmp_path, {"source": {"type": "git", "url": "https://git.example.com/octo/hello.git"},
                        "notify": [GITHUB]})
    load(tmp_path, {"source": {"type": "git", "url": "https://git.example.com/octo/hello.git"},
                    "notify": [{**GITHUB, "repository": "octo/hello"}]})


def test_a_commit_status_on_an_app_whose_revisions_are_no_commits_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"notify\.0: a github commit status needs a Git source; "
                                          r"the revisions of a manual source are no commits"):
        load(tmp_path, {"notify": [{**GITHUB, "repository": "octo/hello"}]})


def test_an_azure_devops_status_needs_an_organization(tmp_path):
    with pytest.raises(ConfigError, match=r"notify\.0\.organization: .* set organization"):
        load(tmp_path, {"source": {"type": "git", "url": "/srv/hello.git"},
                        "notify": [{"type": "azure-devops", "token": "pat", "repository": "web/front"}]})


def test_a_repository_that_is_not_two_names_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"apps\.hello\.notify\.0\.(github\.)?repository: 'octo' is not "
                                          r"two names joined by '/'"):
        load(tmp_path, {"source": {"type": "git", "url": "https://github.com/octo/hello"},
                        "notify": [{**GITHUB, "repository": "octo"}]})


def test_an_empty_token_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"token.*must not be empty"):
        load(tmp_path, {"source": {"type": "git", "url": "https://github.com/octo/hello"},
                        "notify": [{**GITHUB, "token": " "}]})


def test_bitbucket_statuses_need_the_public_url_they_link_to(tmp_path):
    app = {"source": {"type": "git", "url": "https://bitbucket.org/team/site.git"},
           "notify": [{"type": "bitbucket", "token": "bb-token"}]}
    with pytest.raises(ConfigError, match=r"public_url: required by the bitbucket channel at "
                                          r"apps\.hello\.notify\.0"):
        load(tmp_path, app, public_url=None)
    load(tmp_path, app)


def test_a_top_level_status_channel_takes_apps_it_cannot_mark(tmp_path):
    load(tmp_path, {}, notify=[GITHUB])
