"""Tiny wheels written straight into a folder, for builds that install packages offline
(PIP_NO_INDEX, PIP_FIND_LINKS): a wheel is a zip of the package and its dist-info, so no
build backend (which pip would fetch from PyPI) is needed to make one."""
from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path


def write_wheel(folder: Path, name: str, version: str = "1.0", requires: tuple[str, ...] = (),
                body: str = "", extra: Mapping[str, str] | None = None) -> Path:
    """`name`-`version` as a pure-Python wheel whose module says its version, in `folder`;
    `extra`: more files of the package (paths inside its folder), for a wheel with some heft."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n{body}",
        f"{info}/METADATA": "Metadata-Version: 2.1\n"
                            f"Name: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sluice-tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        **{f"{name}/{path}": text for path, text in (extra or {}).items()},
    }
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def python_function_app(workspace, wheels: Path, name: str = "py", requirements: str = "alpha==1.0\n",
                        settings: dict | None = None, **app) -> tuple:
    """A Python function app of a new repository whose requirements.txt names packages of
    `wheels`, built offline with the interpreter running the tests (`app`: more of the app's
    keys; `settings`: top-level ones): (repo, services)."""
    from tests.helpers import FUNCTION_APP
    repo = workspace.repo()
    repo.commit({**FUNCTION_APP, "requirements.txt": requirements})
    build = {"python": sys.executable, "env": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}}
    services = workspace.configure({name: {
        "layout": "functions", "target": str(workspace.target(name)), "build": build,
        "source": {"type": "git", "url": str(repo.path), "poll_interval": "1h"}, **app}},
        **(settings or {}))
    return repo, services


def build_succeeded(services, app: str, deployment_id: str):
    """The deployment's BuildSucceeded event."""
    from orchestrator.core import events as ev
    found = [r.event for r in services.store.read(app) if isinstance(r.event, ev.BuildSucceeded)
             and r.event.deployment_id == deployment_id]
    assert found, [r.event for r in services.store.read(app)]
    return found[0]
