"""Git over smart HTTP behind the environment's proxy: the in-process head check takes the way
git's own fetch takes, through the proxy, or around it for a host no_proxy names."""
from __future__ import annotations

import pytest

from orchestrator.config.sources import GitSourceConfig
from orchestrator.releases.snapshots import SnapshotStore
from orchestrator.sources.git import GitSource
from tests.helpers import FUNCTION_APP, GitRepo, git
from tests.servers.git_http import GitHttpServer
from tests.servers.http_proxy import HttpProxy


@pytest.mark.parametrize("no_proxy", [None, "localhost,127.0.0.1"], ids=["proxied", "no_proxy"])
def test_the_head_check_and_the_fetch_both_go_through_the_proxy_unless_no_proxy_names_the_host(
        tmp_path, proxy_environment, no_proxy):
    bare, work = tmp_path / "served" / "app.git", GitRepo(tmp_path / "work")
    head = work.commit(FUNCTION_APP)
    git(tmp_path, "init", "--quiet", "--bare", str(bare))
    git(work.path, "push", "--quiet", str(bare), "HEAD:master")
    with GitHttpServer(tmp_path / "served") as server, HttpProxy() as proxy:
        url = f"{server.url}/app.git"
        proxy_environment.setenv("http_proxy", proxy.url)       # git's curl reads only the lower case
        if no_proxy:
            proxy_environment.setenv("NO_PROXY", no_proxy)
        source = GitSource(GitSourceConfig(type="git", url=url), tmp_path / "cache")
        checked = source.head()
        by_head_check = list(proxy.seen)
        builder = SnapshotStore(tmp_path / "store").builder()
        source.fetch(checked, builder)
    assert checked == head and set(builder.seal().manifest.files) == set(FUNCTION_APP)
    if no_proxy:
        assert proxy.seen == []
    else:
        assert by_head_check and all(target.startswith(url) for _, target in proxy.seen)
        assert len(proxy.seen) > len(by_head_check)            # git's fetch came the same way
