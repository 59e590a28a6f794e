"""Moving an existing app onto continuous deployment: import a directory as its release,
export it, and the whole flow with real clients (ftplib, the git CLI)."""
from __future__ import annotations

import os
import stat

import pytest

from orchestrator.core.errors import InvalidAppLayout, PermanentError
from orchestrator.deploying.import_export import export_release, import_directory
from orchestrator.releases.removal import remove_tree
from tests.helpers import FUNCTION_APP, write_files
from tests.integration.flow import tree, wait_until_ended

EXISTING = {**FUNCTION_APP, "HttpHello/data.txt": "existing data\n"}
DEEPER_THAN_PYTHON_RECURSES = 1200      # its absolute path still fits in PATH_MAX


@pytest.fixture
def existing(tmp_path):
    """An app's files as they are on some server today, with a stray .git folder."""
    root = tmp_path / "existing-app"
    write_files(root, {**EXISTING, ".git/config": "[core]\n"})
    return root


def deep_folder(root, depth: int) -> None:
    """A file `depth` levels below root, made level by level (os.makedirs recurses too)."""
    folder = str(root)
    for _ in range(depth - 1):
        folder += "/d"
        os.mkdir(folder)
    with open(folder + "/leaf.txt", "w") as leaf:
        leaf.write("deep\n")


@pytest.fixture
def no_deep_tree_left(tmp_path):
    """pytest's clean-up of old temporary folders recurses (shutil.rmtree) and would fail."""
    yield
    remove_tree(tmp_path)


def manual_app(workspace) -> dict:
    return {"hello": {"target": str(workspace.target("hello"))}}


def test_an_imported_directory_becomes_the_first_release(workspace, existing):
    services = workspace.configure(manual_app(workspace))
    queued = import_directory(services, "hello", existing)
    d = wait_until_ended(services, "hello", queued.deployment_id)
    assert d.status == "success" and d.trigger == "import"
    assert tree(workspace.target("hello")) == EXISTING
    live = os.path.realpath(workspace.target("hello"))
    assert not os.stat(os.path.join(live, "host.json")).st_mode & stat.S_IWUSR


def test_an_app_on_continuous_deployment_refuses_an_import(workspace, existing):
    repo = workspace.repo()
    repo.commit(FUNCTION_APP)
    services = workspace.configure({"hello": {"target": str(workspace.target("hello")), "source": {
        "type": "git", "url": str(repo.path)}}})
    with pytest.raises(PermanentError, match="is on continuous deployment"):
        import_directory(services, "hello", existing)


def test_a_symlink_leaving_the_directory_fails_the_import_naming_it(workspace, existing):
    os.symlink("/etc/passwd", existing / "HttpHello" / "passwd")
    services = workspace.configure(manual_app(workspace))
    with pytest.raises(InvalidAppLayout, match="HttpHello/passwd"):
        import_directory(services, "hello", existing)
    assert not workspace.target("hello").exists()


def test_an_import_deeper_than_a_release_may_be_is_refused_naming_the_path_as_a_release_is(
        workspace, existing, no_deep_tree_left):
    deep_folder(existing / "HttpHello", DEEPER_THAN_PYTHON_RECURSES)
    services = workspace.configure(manual_app(workspace))

    with pytest.raises(InvalidAppLayout) as refused:
        import_directory(services, "hello", existing)

    assert str(refused.value).startswith("'HttpHello/d/d/d/") and "at most 256 deep" in str(refused.value)
    assert "' is 257 levels deep" in str(refused.value)
    assert not workspace.target("hello").exists() and services.projections.app("hello").history() == []


def test_an_import_whose_paths_pass_path_max_is_refused_naming_the_folder_it_could_not_read(
        workspace, existing, no_deep_tree_left):
    long_name = "n" * 250       # 20 levels pass Linux's 4096 bytes: made relative to the one above
    fd = os.open(existing, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(20):
        os.mkdir(long_name, dir_fd=fd)
        fd, above = os.open(long_name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(above)
    os.close(os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    services = workspace.configure(manual_app(workspace))

    with pytest.raises(PermanentError, match=f"^cannot read {existing}/{long_name}/.*: File name too long"):
        import_directory(services, "hello", existing)

    assert services.projections.app("hello").history() == []


def test_an_export_of_a_release_deeper_than_a_release_may_be_is_refused_naming_the_path(
        workspace, existing, tmp_path, no_deep_tree_left):
    """A release an earlier Sluice, which had no depth limit, made live."""
    deep_folder(existing / "HttpHello", DEEPER_THAN_PYTHON_RECURSES)
    services = workspace.configure(manual_app(workspace))
    workspace.target("hello").parent.mkdir(parents=True, exist_ok=True)
    os.symlink(existing, workspace.target("hello"))
    out = tmp_path / "exported"

    with pytest.raises(InvalidAppLayout, match=r"^'HttpHello/d/d/d/.*' is 257 levels deep; .* at most 256"):
        export_release(services, "hello", out)

    assert not out.exists()


def test_an_export_copies_the_live_release_writable(workspace, existing, tmp_path):
    services = workspace.configure(manual_app(workspace))
    wait_until_ended(services, "hello", import_directory(services, "hello", existing).deployment_id)
    out = tmp_path / "exported"
    export_release(services, "hello", out)
    assert tree(out) == EXISTING
    (out / "host.json").write_text("{}")         # writable, and the release is untouched
    assert tree(workspace.target("hello")) == EXISTING
    with pytest.raises(PermanentError, match="not empty"):
        export_release(services, "hello", out)


def test_the_whole_move_import_download_over_ftp_and_git_commit_switch_source_deploy(
        workspace, existing, tmp_path, monkeypatch):
    """Azure's "move existing functions to continuous deployment", with real clients."""
    import ftplib
    import io
    import threading

    from orchestrator.access.credentials import set_credentials
    from orchestrator.access.ftp import build_server, serve_ftp
    from tests.integration.flow import sync_and_wait
    from tests.integration.test_builtin_git import ok_git
    from tests.integration.test_ftp import _free_port, _free_range
    from tests.servers.api_server import serving

    monkeypatch.setenv("SLUICE_CONFIG", str(workspace.config_path))
    port, password = _free_port(), "m0ve-it-Now"
    ftp = {"listen": f"127.0.0.1:{port}", "passive_ports": _free_range()}
    services = workspace.configure(manual_app(workspace), ftp=ftp)
    set_credentials(services, "hello", "deploy", password)

    # 1. The existing files become the app's first release.
    d = wait_until_ended(services, "hello", import_directory(services, "hello", existing).deployment_id)
    assert d.status == "success"

    # 2. The user downloads them over FTP (APP\USER) and clones them over Git.
    stop, listening = threading.Event(), build_server(services)
    threading.Thread(target=serve_ftp, args=(services, stop, listening), daemon=True).start()
    try:
        client = ftplib.FTP()
        client.connect("127.0.0.1", port, timeout=10)
        client.login("hello\\deploy", password)
        downloaded = io.BytesIO()
        client.retrbinary("RETR HttpHello/data.txt", downloaded.write)
        listed = sorted(client.nlst("HttpHello"))
        client.quit()
    finally:
        stop.set()
    assert downloaded.getvalue() == b"existing data\n"
    assert listed == ["__init__.py", "data.txt", "function.json"]
    with serving(services) as base:
        url = base.replace("://", f"://deploy:{password}@") + "/git/hello.git"
        ok_git(tmp_path, "clone", "--quiet", url, "code")
    code = tmp_path / "code"
    cloned = {str(p.relative_to(code)): p.read_text() for p in code.rglob("*")
              if p.is_file() and ".git" not in p.relative_to(code).parts}
    assert cloned == EXISTING

    # 3. They commit a change into a repository of their own and make it the app's source.
    (code / "HttpHello" / "data.txt").write_text("changed under continuous deployment\n")
    ok_git(code, "commit", "--quiet", "-am", "First change under continuous deployment")
    services = workspace.configure({"hello": {"target": str(workspace.target("hello")), "source": {
        "type": "git", "url": str(code), "branch": "master"}}}, ftp=ftp)

    # 4. The source deploys; the app is now on continuous deployment.
    d = sync_and_wait(services, "hello")
    assert d.status == "success" and d.trigger == "manual"
    assert tree(workspace.target("hello"))["HttpHello/data.txt"] == "changed under continuous deployment\n"
    with pytest.raises(PermanentError, match="is on continuous deployment"):
        import_directory(services, "hello", existing)
