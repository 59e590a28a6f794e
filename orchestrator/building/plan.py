"""What a deployment builds: Kudu's conventions at the app's root, or `build.command`.

Pure: the tree is a collection of paths and a callable that reads one, so the plan is the
same whether the files are in the store, a scratch copy or a test's dict.
"""
from __future__ import annotations

import configparser
import json
import posixpath
import shlex
import shutil
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from orchestrator.config.steps import BuildConfig
from orchestrator.core.errors import BuildFailed

WHOLE_TREE = ("*",)
TARGET = "@target"
SITE_PACKAGES = ".python_packages/lib/site-packages"
_OFF = ("false", "0")
_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_FOLDER_OPTIONS = ("-e", "--editable", "-f", "--find-links")
_ON = ("true", "1", "")
# Kudu's Windows scripts: named as the tool they need, so a Linux host reports it missing.
_WINDOWS_SCRIPTS = {".cmd": "cmd", ".bat": "cmd", ".ps1": "pwsh"}


@dataclass(frozen=True)
class BuildStep:
    name: str                   # "pip", "npm-install", "npm-build", "custom"
    command: list[str]          # argv, run at the app's root
    asked_by: str               # the file (or config key) that asked for it
    tool: str                   # the program it needs on PATH
    inputs: tuple[str, ...]     # files whose bytes key the cache; ("*",): the whole tree
    output: str                 # a folder, "" (any file added or changed) or "@target"


@dataclass(frozen=True)
class BuildPlan:
    steps: tuple[BuildStep, ...]
    why: str                    # what asked for the build, for BuildStarted and the log


Reader = Callable[[str], bytes]


def plan_build(config: BuildConfig, files: Collection[str], read: Reader) -> BuildPlan | None:
    """The steps the app's tree asks for; None when there is nothing to build."""
    if config.command == "none":
        return None
    if config.command != "auto":
        return _plan(_custom(config.command, "build.command", files))
    deployment = _read_deployment(read) if ".deployment" in files else {}
    if deployment.get("scm_do_build_during_deployment", "") in _OFF:
        return None
    if deployment.get("command"):
        return _plan(_custom(deployment["command"], ".deployment", files))
    steps: list[BuildStep] = []
    if "requirements.txt" in files:
        steps.append(_pip(config.python, files, read))
    if "package.json" in files:
        steps += _npm(files, read)
    return _plan(*steps) if steps else None


def missing_tools(plan: BuildPlan, which: Callable[[str], str | None] = shutil.which) -> list[BuildStep]:
    """The steps whose program this machine lacks (each tool looked up once)."""
    found = {tool: which(tool) is not None for tool in {step.tool for step in plan.steps}}
    return [step for step in plan.steps if not found[step.tool]]


def require_tools(plan: BuildPlan, which: Callable[[str], str | None] = shutil.which) -> None:
    """BuildFailed naming each missing tool and the file that asked for it."""
    missing = missing_tools(plan, which)
    if missing:
        needs = "; ".join(f"{step.tool} (for {step.asked_by})" for step in missing)
        raise BuildFailed(f"the build needs what this machine lacks: {needs}")


def _plan(*steps: BuildStep) -> BuildPlan:
    return BuildPlan(steps, ", ".join(dict.fromkeys(step.asked_by for step in steps)))


def _read_deployment(read: Reader) -> dict[str, str]:
    """`.deployment`'s [config] section, keys lower-cased and values unquoted."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(read(".deployment").decode("utf-8-sig"))
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise BuildFailed(f".deployment: not a valid INI file with a [config] section: {_first_line(exc)}") from None
    if not parser.has_section("config"):
        return {}
    settings = {key: _unquoted(value) for key, value in parser.items("config")}
    switch = settings.get("scm_do_build_during_deployment", "").lower()
    if switch not in _ON + _OFF:
        raise BuildFailed(f".deployment: SCM_DO_BUILD_DURING_DEPLOYMENT = {switch!r}: use true or false")
    return {**settings, "scm_do_build_during_deployment": switch}


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1].strip()
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _custom(line: str, asked_by: str, files: Collection[str]) -> BuildStep:
    """`command = deploy.sh` names a script at the root, as Kudu runs it; anything else is a
    shell command line."""
    words = _split(line)
    first = words[0] if words else ""
    if first in files and "/" not in first:
        line = f"./{line.strip()}"
    tool = _WINDOWS_SCRIPTS.get(posixpath.splitext(first)[1].lower(), "sh")
    return BuildStep("custom", ["/bin/sh", "-c", line], asked_by, tool, WHOLE_TREE, TARGET)


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def _pip(python: str, files: Collection[str], read: Reader) -> BuildStep:
    command = [python, "-m", "pip", "install", "--target", SITE_PACKAGES, "-r", "requirements.txt",
               "--disable-pip-version-check", "--no-input"]
    return BuildStep("pip", command, "requirements.txt", python,
                     _requirement_inputs(files, read), ".python_packages")


def _requirement_inputs(files: Collection[str], read: Reader) -> tuple[str, ...]:
    """requirements.txt, the requirement and constraint files it names, and the local
    projects it installs: whatever pip reads from the tree changes the result."""
    seen: list[str] = []
    local: list[str] = []
    todo = ["requirements.txt"]
    while todo:
        name = todo.pop()
        if name in seen or name not in files:
            continue
        seen.append(name)
        for kind, target in _requirement_refs(read(name).decode("utf-8", "replace")):
            path = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            (todo if kind == "file" else local).append(path)
    return _inputs(*seen, *_local_files(local, files))


def _requirement_refs(text: str) -> Iterable[tuple[str, str]]:
    """("file", path) for -r/-c, ("local", path) for a project, a wheel or a --find-links
    folder in the tree."""
    for line in text.replace("\\\n", " ").splitlines():
        words = line.split(" #")[0].split()
        if not words or words[0].startswith("#"):
            continue
        option, _, value = words[0].partition("=")
        if option in _FILE_OPTIONS + _FOLDER_OPTIONS:
            target = value or (words[1] if len(words) > 1 else "")
            kind = "file" if option in _FILE_OPTIONS else "local"
        else:
            target, kind = words[0], "local"
        if target and (kind == "file" or _is_local_path(target)):
            yield kind, target.removeprefix("file:")


def _is_local_path(word: str) -> bool:
    if word.startswith("file:"):
        word = word.removeprefix("file:")
        return not word.startswith("/")
    return word in (".", "..") or word.startswith(("./", "../")) or (
        "/" in word and ":" not in word and not word.startswith("/"))


def _npm(files: Collection[str], read: Reader) -> list[BuildStep]:
    package = _read_package(read)
    scripts = package.get("scripts") or {}
    if not isinstance(scripts, dict):
        raise BuildFailed("package.json: \"scripts\" must be an object of script names and commands")
    locked = "package-lock.json" in files
    builds = "build" in scripts
    # A build script needs the devDependencies (tsc, webpack, ...): Oryx keeps them too.
    verb = ["npm", "ci"] if locked else ["npm", "install"]
    install = verb if builds else [*verb, "--omit=dev"]
    inputs = _inputs("package.json", *(["package-lock.json"] if locked else []),
                     *_local_files(_file_deps(package), files))
    steps = [BuildStep("npm-install", install, "package.json", "npm", inputs, "node_modules")]
    if builds:
        steps.append(BuildStep("npm-build", ["npm", "run", "build"], "package.json", "npm", WHOLE_TREE, ""))
    return steps


def _read_package(read: Reader) -> dict:
    try:
        package = json.loads(read("package.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"package.json: not valid JSON: {_first_line(exc)}") from None
    if not isinstance(package, dict):
        raise BuildFailed("package.json: must be a JSON object (name, dependencies, scripts, ...)")
    return package


def _file_deps(package: dict) -> list[str]:
    """The folders and tarballs of `file:` dependencies, relative to the root."""
    found = []
    for group in ("dependencies", "optionalDependencies", "devDependencies"):
        specs = package.get(group) or {}
        if not isinstance(specs, dict):
            raise BuildFailed(f"package.json: \"{group}\" must be an object of package names and versions")
        found += [posixpath.normpath(spec.removeprefix("file:")) for spec in specs.values()
                  if isinstance(spec, str) and spec.startswith("file:")]
    return found


def _local_files(paths: Iterable[str], files: Collection[str]) -> list[str]:
    """Each path inside the tree as the files it names: itself, or those under the folder
    ("*" for the root itself)."""
    found: list[str] = []
    for path in paths:
        if path == ".":
            found.append("*")
        elif not path.startswith(("..", "/")):
            found += [path] if path in files else sorted(f for f in files if f.startswith(f"{path}/"))
    return found


def _inputs(*paths: str) -> tuple[str, ...]:
    return WHOLE_TREE if "*" in paths else tuple(dict.fromkeys(paths))
