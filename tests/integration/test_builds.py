"""Builds during deployment (issue 14) with the session's real worker: dependencies installed
as Kudu does, in a scratch copy, cached by what determines them, never on the live site.
Offline: packages come from a wheelhouse the test writes (tests/wheelhouse.py)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.core import events as ev
from orchestrator.releases.snapshots import SnapshotStore
from tests.helpers import FUNCTION_APP, wait_for
from tests.integration.flow import sync_and_wait, tree
from tests.wheelhouse import build_succeeded, python_function_app, write_wheel

SITE_PACKAGES = ".python_packages/lib/site-packages"


def build_events(services, app: str, deployment_id: str) -> list[ev.Event]:
    return [r.event for r in services.store.read(app) if r.event.type.startswith("Build")
            and getattr(r.event, "deployment_id", None) == deployment_id]


@pytest.fixture
def python_app(workspace, tmp_path):
    """A Python function app whose requirements.txt names packages of a local wheelhouse."""
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "alpha", "1.0", requires=("beta",))
    write_wheel(wheels, "beta", "2.0")
    write_wheel(wheels, "gamma", "3.0")
    return python_function_app(workspace, wheels)


def files_of(root: Path) -> dict[str, bytes]:
    root = root.resolve()
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def importable(release: Path, module: str) -> str:
    """What `module.VERSION` is for Python with the release's packages on its path, as the
    Azure Functions Python worker puts them."""
    code = f"import sys; sys.path.insert(0, {str(release / SITE_PACKAGES)!r}); import {module}; print({module}.VERSION)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd="/").stdout.strip()


def test_a_python_apps_requirements_are_installed_where_the_functions_worker_looks(python_app, workspace):
    repo, services = python_app

    d = sync_and_wait(services, "py", timeout=120)

    assert d.status == "success", d.message
    live = workspace.target("py").resolve()
    assert importable(live, "alpha") == "1.0" and importable(live, "beta") == "2.0"
    assert (live / "HttpHello/__init__.py").read_text() == FUNCTION_APP["HttpHello/__init__.py"]
    built = build_succeeded(services, "py", d.id)
    assert not built.cached and built.steps.keys() == {"pip"} and built.files_added > 4


def test_the_default_python3_on_path_installs_under_the_sandbox_even_behind_a_shim(workspace, tmp_path):
    """pyenv's python3 is a shim that writes beside itself, which the sandbox forbids: the
    build runs the interpreter the shim would run."""
    write_wheel(tmp_path / "wheels", "alpha")
    repo, services = workspace.app_with({**FUNCTION_APP, "requirements.txt": "alpha\n"}, name="py3",
                                        build={"env": {"PIP_NO_INDEX": "1",
                                                       "PIP_FIND_LINKS": str(tmp_path / "wheels")}})

    d = sync_and_wait(services, "py3", timeout=120)

    assert d.status == "success", d.message
    assert importable(workspace.target("py3").resolve(), "alpha") == "1.0"


def test_a_code_only_change_reuses_the_installed_packages_and_runs_nothing(python_app, workspace):
    repo, services = python_app
    sync_and_wait(services, "py", timeout=120)
    repo.commit({"HttpHello/__init__.py": "def main(req):\n    return 'v2'\n"})

    d = sync_and_wait(services, "py", timeout=120)

    assert d.status == "success", d.message
    built = build_succeeded(services, "py", d.id)
    assert built.cached and built.steps == {"pip": "cached"}
    assert not [e for e in build_events(services, "py", d.id) if isinstance(e, ev.BuildOutput)]
    live = workspace.target("py").resolve()
    assert "v2" in (live / "HttpHello/__init__.py").read_text()
    assert importable(live, "alpha") == "1.0"


def test_a_changed_requirement_is_built_again(python_app, workspace):
    repo, services = python_app
    sync_and_wait(services, "py", timeout=120)
    repo.commit({"requirements.txt": "alpha==1.0\ngamma==3.0\n"})

    d = sync_and_wait(services, "py", timeout=120)

    assert d.status == "success", d.message
    assert not build_succeeded(services, "py", d.id).cached
    assert importable(workspace.target("py").resolve(), "gamma") == "3.0"


def test_an_unknown_requirement_fails_with_pips_words_and_leaves_the_site_as_it_was(python_app, workspace):
    repo, services = python_app
    first = sync_and_wait(services, "py", timeout=120)
    before = files_of(workspace.target("py"))
    repo.commit({"requirements.txt": "alpha==1.0\nno-such-package==9.9\n"})

    d = sync_and_wait(services, "py", timeout=120)

    assert d.status == "failed"
    assert "pip" in d.message and "no-such-package" in d.message, d.message
    assert "No matching distribution" in d.message or "Could not find a version" in d.message
    assert d.attempts == 1                              # the same inputs fail the same way
    assert files_of(workspace.target("py")) == before
    assert services.projections.app("py").active.id == first.id
    failed = [e for e in build_events(services, "py", d.id) if isinstance(e, ev.BuildFailed)]
    assert failed and failed[0].exit_code not in (0, None) and failed[0].step == "pip"


def test_a_site_without_dependency_files_is_not_built(workspace):
    repo, services = workspace.app_with({"index.html": "<h1>plain</h1>\n"}, name="plain",
                                        layout="site")

    d = sync_and_wait(services, "plain")

    assert d.status == "success" and build_events(services, "plain", d.id) == []


def test_build_none_deploys_the_files_as_they_are(workspace):
    repo, services = workspace.app_with({**FUNCTION_APP, "requirements.txt": "alpha==1.0\n"},
                                        name="raw", build="none")

    d = sync_and_wait(services, "raw")

    assert d.status == "success" and build_events(services, "raw", d.id) == []
    assert not (workspace.target("raw") / ".python_packages").exists()


DEPLOY_SH = """#!/bin/sh
set -e
cp -r "$DEPLOYMENT_SOURCE"/. "$DEPLOYMENT_TARGET"/
rm -f "$DEPLOYMENT_TARGET"/deploy.sh "$DEPLOYMENT_TARGET"/.deployment
echo built > "$DEPLOYMENT_TARGET"/built.txt
env | sort > "$DEPLOYMENT_TARGET"/env.txt
echo "rewritten by the build" > "$DEPLOYMENT_SOURCE"/index.html
echo "deploy.sh done"
"""


def test_a_deployment_file_runs_its_command_and_deploys_what_it_left_in_the_target(workspace):
    files = {"index.html": "<h1>source</h1>\n", ".deployment": "[config]\ncommand = deploy.sh\n",
             "deploy.sh": DEPLOY_SH}
    repo, services = workspace.app_with(files, name="kudu", layout="site")
    os.chmod(repo.path / "deploy.sh", 0o755)
    repo.commit({}, "executable")

    d = sync_and_wait(services, "kudu", timeout=60)

    assert d.status == "success", d.message
    live = tree(workspace.target("kudu"))
    assert live["built.txt"] == "built\n" and live["index.html"] == "<h1>source</h1>\n"
    assert "deploy.sh" not in live and ".deployment" not in live
    output = [line for e in build_events(services, "kudu", d.id) if isinstance(e, ev.BuildOutput)
              for line in e.lines]
    assert "deploy.sh done" in output
    # the build rewrote its copy of index.html; the store's blob is what the source holds
    store = SnapshotStore(workspace.data_dir / "store")
    blob = hashlib.sha256(b"<h1>source</h1>\n").hexdigest()
    assert Path(store.blob_path(blob)).read_bytes() == b"<h1>source</h1>\n"


def test_a_build_sees_no_secret_of_the_worker(workspace):
    files = {"index.html": "x\n", ".deployment": "[config]\ncommand = deploy.sh\n", "deploy.sh": DEPLOY_SH}
    repo, services = workspace.app_with(files, name="env", layout="site")
    os.chmod(repo.path / "deploy.sh", 0o755)
    repo.commit({}, "executable")

    d = sync_and_wait(services, "env", timeout=60)

    assert d.status == "success", d.message
    env = tree(workspace.target("env"))["env.txt"]
    names = {line.partition("=")[0] for line in env.splitlines()}
    assert not {n for n in names if n.startswith(("SLUICE", "CELERY", "REDIS"))}, names
    password = services.redis_url.partition("://:")[2].partition("@")[0]
    assert password and password not in env
    assert f"HOME={workspace.data_dir / 'build-home' / 'env'}" in env.splitlines()


def test_a_build_past_its_timeout_is_killed_with_its_children(workspace, tmp_path):
    pids = tmp_path / "pids"
    script = f"#!/bin/sh\nsleep 300 &\necho $! > {pids}\nsleep 300\n"
    files = {"index.html": "x\n", ".deployment": "[config]\ncommand = deploy.sh\n", "deploy.sh": script}
    repo, services = workspace.app_with(files, name="slow", layout="site",
                                        build={"timeout": "2s", "sandbox": "off"})
    os.chmod(repo.path / "deploy.sh", 0o755)
    repo.commit({}, "executable")

    d = sync_and_wait(services, "slow", timeout=60)

    assert d.status == "failed" and "timeout" in d.message, d.message
    child = int(wait_for(lambda: pids.exists() and pids.read_text().strip(), what="the child's pid"))
    wait_for(lambda: not Path(f"/proc/{child}").exists(), timeout=10, what="the build's child to be gone")
    assert not workspace.target("slow").exists()


def test_a_sandboxed_build_cannot_write_into_the_store(workspace):
    from orchestrator.building.command import sandbox_for
    if sandbox_for("auto", []) is None:
        pytest.skip("bwrap is not installed here, or cannot run (no user namespaces)")
    store = workspace.data_dir / "store"
    script = '#!/bin/sh\necho planted > "$STORE/planted" && echo "wrote the store"\n'
    files = {"index.html": "x\n", ".deployment": "[config]\ncommand = deploy.sh\n", "deploy.sh": script}
    repo, services = workspace.app_with(files, name="boxed", layout="site",
                                        build={"sandbox": "on", "env": {"STORE": str(store)}})
    os.chmod(repo.path / "deploy.sh", 0o755)
    repo.commit({}, "executable")

    d = sync_and_wait(services, "boxed", timeout=60)

    assert d.status == "failed" and "planted" in d.message, d.message     # hidden, or read-only
    assert not (store / "planted").exists()


needs_npm = pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                               reason="npm or node is not installed (make test installs Debian's npm)")
# npm must not reach the registry from a test: the app's only dependency is a folder of its own.
NPM_OFFLINE = {"npm_config_offline": "true", "npm_config_audit": "false", "npm_config_fund": "false",
               "npm_config_update_notifier": "false"}
NODE_APP = {
    "host.json": '{"version": "2.0"}',
    "HttpHello/function.json": '{"bindings": [{"type": "httpTrigger", "direction": "in", "name": "req"}]}',
    "HttpHello/index.js": "const greet = require('greet');\nmodule.exports = async () => greet('v1');\n",
    "libs/greet/package.json": '{"name": "greet", "version": "1.0.0", "main": "index.js"}\n',
    "libs/greet/index.js": "module.exports = (who) => `hello ${who}`;\n",
}
BUILD_JS = """const fs = require('fs');
fs.mkdirSync('dist', {recursive: true});
const code = fs.readFileSync('HttpHello/index.js', 'utf8');
fs.writeFileSync('dist/out.txt', require('greet')('build') + ' of ' + code.length + ' bytes\\n');
console.log('wrote dist/out.txt');
"""


def package_files(scripts: dict[str, str] | None = None) -> dict[str, str]:
    """package.json naming greet by its folder, and the lockfile npm writes for it
    (`npm install --package-lock-only`), so the build runs `npm ci`."""
    package = {"name": "node-app", "version": "1.0.0", "private": True,
               "dependencies": {"greet": "file:libs/greet"}, **({"scripts": scripts} if scripts else {})}
    lock = {"name": "node-app", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": "node-app", "version": "1.0.0",
                              "dependencies": {"greet": "file:libs/greet"}},
                         "libs/greet": {"version": "1.0.0"},
                         "node_modules/greet": {"resolved": "libs/greet", "link": True}}}
    return {"package.json": json.dumps(package, indent=2) + "\n",
            "package-lock.json": json.dumps(lock, indent=2) + "\n"}


def node_says(release: Path, code: str) -> str:
    return subprocess.run(["node", "-e", code], capture_output=True, text=True, check=True,
                          cwd=release).stdout.strip()


@needs_npm
def test_a_node_apps_file_dependency_is_installed_from_its_lockfile_and_requirable(workspace):
    repo, services = workspace.app_with({**NODE_APP, **package_files()}, name="node",
                                        build={"env": NPM_OFFLINE})

    d = sync_and_wait(services, "node", timeout=120)

    assert d.status == "success", d.message
    live = workspace.target("node").resolve()
    assert (live / "node_modules/greet/package.json").exists()
    assert node_says(live, "console.log(require('greet')('node'))") == "hello node"
    built = build_succeeded(services, "node", d.id)
    assert built.steps.keys() == {"npm-install"} and not built.cached
    started = [e for e in build_events(services, "node", d.id) if isinstance(e, ev.BuildStarted)]
    assert started[0].steps == ["npm-install"]


@needs_npm
def test_a_node_apps_build_script_runs_and_what_it_writes_is_deployed(workspace):
    files = {**NODE_APP, **package_files({"build": "node build.js"}), "build.js": BUILD_JS}
    repo, services = workspace.app_with(files, name="nodebuild", build={"env": NPM_OFFLINE})

    d = sync_and_wait(services, "nodebuild", timeout=120)

    assert d.status == "success", d.message
    live = workspace.target("nodebuild").resolve()
    code = NODE_APP["HttpHello/index.js"]
    assert (live / "dist/out.txt").read_text() == f"hello build of {len(code)} bytes\n"
    assert build_succeeded(services, "nodebuild", d.id).steps.keys() == {"npm-install", "npm-build"}
    output = [line for e in build_events(services, "nodebuild", d.id) if isinstance(e, ev.BuildOutput)
              for line in e.lines]
    assert "wrote dist/out.txt" in output


@needs_npm
def test_a_node_code_change_reuses_node_modules_but_runs_the_build_script_again(workspace):
    files = {**NODE_APP, **package_files({"build": "node build.js"}), "build.js": BUILD_JS}
    repo, services = workspace.app_with(files, name="nodecode", build={"env": NPM_OFFLINE})
    assert sync_and_wait(services, "nodecode", timeout=120).status == "success"
    code = "const greet = require('greet');\nmodule.exports = async () => greet('version two');\n"
    repo.commit({"HttpHello/index.js": code})

    d = sync_and_wait(services, "nodecode", timeout=120)

    assert d.status == "success", d.message
    steps = build_succeeded(services, "nodecode", d.id).steps
    assert steps["npm-install"] == "cached" and steps["npm-build"] != "cached", steps
    live = workspace.target("nodecode").resolve()
    assert (live / "dist/out.txt").read_text() == f"hello build of {len(code)} bytes\n"
    assert node_says(live, "console.log(require('greet')('again'))") == "hello again"


def test_a_sandboxed_build_sees_neither_sluices_data_nor_its_config(workspace):
    from orchestrator.building.command import sandbox_for
    if sandbox_for("auto", []) is None:
        pytest.skip("bwrap is not installed here, or cannot run (no user namespaces)")
    script = ('#!/bin/sh\ncat "$CONFIG" > "$DEPLOYMENT_TARGET/config.txt"\n'
              'ls -A "$DATA" > "$DEPLOYMENT_TARGET/data.txt"\n')
    files = {"index.html": "x\n", ".deployment": "[config]\ncommand = deploy.sh\n", "deploy.sh": script}
    repo, services = workspace.app_with(files, name="nosy", layout="site", build={
        "sandbox": "on", "env": {"CONFIG": str(workspace.config_path), "DATA": str(workspace.data_dir)}})
    os.chmod(repo.path / "deploy.sh", 0o755)
    repo.commit({}, "executable")

    d = sync_and_wait(services, "nosy", timeout=60)

    assert d.status == "success", d.message
    seen = tree(workspace.target("nosy"))
    assert seen["config.txt"] == ""                             # the worker reads it; the build does not
    assert set(seen["data.txt"].split()) == {"builds", "build-home"}   # no store, releases, redis
    assert (workspace.data_dir / "store").is_dir() and workspace.config_path.read_text()


def test_a_tool_the_machine_lacks_fails_the_deployment_naming_it_and_the_file_that_asked(workspace):
    repo, services = workspace.app_with({**FUNCTION_APP, "requirements.txt": "alpha\n"}, name="notool",
                                        build={"python": "python-that-is-not-here"})

    d = sync_and_wait(services, "notool")

    assert d.status == "failed" and d.attempts == 1
    assert "python-that-is-not-here (for requirements.txt)" in d.message, d.message
    assert not workspace.target("notool").exists()
