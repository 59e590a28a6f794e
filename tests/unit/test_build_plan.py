"""What a deployment builds (issue 14): Kudu's conventions at the app's root, or build.command."""
import functools
import json
import re
import shutil

import pytest

from orchestrator.building.plan import BuildStep, missing_tools, plan_build, require_tools
from orchestrator.config.steps import BuildConfig
from orchestrator.core.errors import BuildFailed, PermanentError

PIP = ["python3", "-m", "pip", "install", "--target", ".python_packages/lib/site-packages",
       "-r", "requirements.txt", "--disable-pip-version-check", "--no-input"]
PACKAGE = json.dumps({"name": "app", "dependencies": {"left-pad": "1.3.0"}})
BUILDING_PACKAGE = json.dumps({"name": "app", "scripts": {"build": "tsc", "start": "node ."},
                               "devDependencies": {"typescript": "5.4.0"}})


def plan(tree: dict[str, str], config: BuildConfig = BuildConfig()):
    return plan_build(config, tree.keys(), lambda path: tree[path].encode())


def only_step(tree: dict[str, str], config: BuildConfig = BuildConfig()) -> BuildStep:
    found = plan(tree, config)
    assert found is not None and len(found.steps) == 1, found
    return found.steps[0]


def test_requirements_txt_is_installed_by_pip_into_the_folder_the_functions_worker_reads():
    step = only_step({"requirements.txt": "requests\n", "function_app.py": ""})
    assert step == BuildStep("pip", PIP, "requirements.txt", "python3", ("requirements.txt",), ".python_packages")


def test_pip_runs_with_the_interpreter_build_python_names():
    step = only_step({"requirements.txt": "requests\n"}, BuildConfig(python="/opt/py311/bin/python"))
    assert step.command[0] == step.tool == "/opt/py311/bin/python"


def test_a_package_with_a_lockfile_is_installed_by_npm_ci_without_dev_dependencies():
    step = only_step({"package.json": PACKAGE, "package-lock.json": "{}"})
    assert (step.name, step.command, step.tool) == ("npm-install", ["npm", "ci", "--omit=dev"], "npm")
    assert (step.inputs, step.output, step.asked_by) == (("package.json", "package-lock.json"), "node_modules",
                                                         "package.json")


def test_a_package_without_a_lockfile_is_installed_by_npm_install_keyed_by_package_json_alone():
    step = only_step({"package.json": PACKAGE})
    assert (step.command, step.inputs) == (["npm", "install", "--omit=dev"], ("package.json",))


def test_a_package_with_a_build_script_installs_what_the_build_needs_then_runs_it_over_the_whole_tree():
    found = plan({"package.json": BUILDING_PACKAGE, "package-lock.json": "{}", "src/index.ts": ""})
    assert found is not None
    install, build = found.steps
    assert install.command == ["npm", "ci"]       # tsc is a devDependency
    assert build == BuildStep("npm-build", ["npm", "run", "build"], "package.json", "npm", ("*",), "")


def test_an_app_with_requirements_and_a_package_runs_pip_first_then_npm():
    found = plan({"requirements.txt": "requests\n", "package.json": PACKAGE})
    assert found is not None
    assert [s.name for s in found.steps] == ["pip", "npm-install"]
    assert found.why == "requirements.txt, package.json"


def test_a_deployment_file_command_wins_over_the_conventions_and_its_output_replaces_the_tree():
    step = only_step({".deployment": "[config]\ncommand = make site\n", "requirements.txt": "x\n"})
    assert step == BuildStep("custom", ["/bin/sh", "-c", "make site"], ".deployment", "sh", ("*",), "@target")


def test_deployment_file_keys_are_case_insensitive_and_values_may_be_quoted():
    step = only_step({".deployment": "[config]\nCOMMAND = \"bash build.sh --release\"\n"})
    assert step.command == ["/bin/sh", "-c", "bash build.sh --release"]


def test_a_deployment_command_naming_a_script_at_the_root_runs_that_script():
    step = only_step({".deployment": "[config]\ncommand = deploy.sh\n", "deploy.sh": "#!/bin/sh\n"})
    assert step.command == ["/bin/sh", "-c", "./deploy.sh"]


@pytest.mark.parametrize("switch", ["false", "False", "0", "'false'"])
def test_scm_do_build_during_deployment_false_turns_every_build_off(switch):
    tree = {".deployment": f"[config]\nSCM_DO_BUILD_DURING_DEPLOYMENT = {switch}\ncommand = make\n",
            "requirements.txt": "requests\n", "package.json": PACKAGE}
    assert plan(tree) is None


def test_a_deployment_file_without_a_command_leaves_the_conventions_to_decide():
    tree = {".deployment": "[config]\nSCM_DO_BUILD_DURING_DEPLOYMENT = true\n", "requirements.txt": "x\n"}
    assert only_step(tree).name == "pip"
    assert only_step({".deployment": "", "requirements.txt": "x\n"}).name == "pip"


def test_build_none_builds_nothing_without_reading_a_file():
    def unreadable(path: str) -> bytes:
        raise AssertionError(f"read {path}")
    assert plan_build(BuildConfig(command="none"), ["requirements.txt", ".deployment"], unreadable) is None


def test_an_explicit_command_is_the_one_step_whatever_the_tree_holds():
    step = only_step({".deployment": "[config]\ncommand = other\n", "package.json": PACKAGE},
                     BuildConfig(command="npm run dist && cp -r dist/. \"$DEPLOYMENT_TARGET\""))
    assert step == BuildStep("custom", ["/bin/sh", "-c", "npm run dist && cp -r dist/. \"$DEPLOYMENT_TARGET\""],
                             "build.command", "sh", ("*",), "@target")


def test_a_tree_that_asks_for_nothing_is_not_built():
    assert plan({"host.json": "{}", "HttpTrigger/function.json": "{}", "HttpTrigger/run.py": ""}) is None
    assert plan({"app/requirements.txt": "x\n", "web/package.json": PACKAGE}) is None


@pytest.mark.parametrize("package, message", [
    ("{\"name\": ", "package.json: not valid JSON"),
    ("[1, 2]", "package.json: must be a JSON object"),
    ("{\"scripts\": [\"build\"]}", "package.json: \"scripts\" must be an object"),
    ("{\"dependencies\": \"left-pad\"}", "package.json: \"dependencies\" must be an object")])
def test_a_malformed_package_json_fails_the_build_naming_the_file(package, message):
    with pytest.raises(BuildFailed, match=message) as caught:
        plan({"package.json": package})
    assert isinstance(caught.value, PermanentError)


@pytest.mark.parametrize("deployment, message", [
    ("command = make\n", ".deployment: not a valid INI file with a [config] section"),
    ("[config]\ncommand = a\ncommand = b\n", ".deployment: not a valid INI file"),
    ("[config]\nSCM_DO_BUILD_DURING_DEPLOYMENT = maybe\n", ".deployment: SCM_DO_BUILD_DURING_DEPLOYMENT = 'maybe'")])
def test_a_malformed_deployment_file_fails_the_build_naming_the_file(deployment, message):
    with pytest.raises(BuildFailed, match=re.escape(message)):
        plan({".deployment": deployment, "requirements.txt": "x\n"})


def test_a_tool_the_machine_lacks_is_reported_with_the_file_that_asked_for_it(tmp_path):
    (tmp_path / "python3").write_text("#!/bin/sh\n")
    (tmp_path / "python3").chmod(0o755)
    only_python = functools.partial(shutil.which, path=str(tmp_path))
    found = plan({"requirements.txt": "x\n", "package.json": BUILDING_PACKAGE})
    assert found is not None

    assert [s.name for s in missing_tools(found, only_python)] == ["npm-install", "npm-build"]
    with pytest.raises(BuildFailed, match=r"needs what this machine lacks: npm \(for package.json\)"):
        require_tools(found, only_python)


def test_an_interpreter_that_does_not_exist_is_a_missing_tool():
    found = plan({"requirements.txt": "x\n"}, BuildConfig(python="python-sluice-nonexistent"))
    assert found is not None
    assert [s.tool for s in missing_tools(found)] == ["python-sluice-nonexistent"]


def test_a_windows_deployment_script_is_reported_as_needing_cmd():
    found = plan({".deployment": "[config]\ncommand = deploy.cmd\n", "deploy.cmd": "@echo off\n"})
    assert found is not None
    assert [s.tool for s in missing_tools(found, lambda tool: None if tool == "cmd" else "/bin/" + tool)] == ["cmd"]


def test_every_file_pip_reads_from_the_tree_keys_the_pip_cache():
    step = only_step({"requirements.txt": "-r requirements/base.txt\n-c constraints.txt\n./libs/shared\n"
                                          "--find-links ./wheels\nrequests==2.31 # pinned\n",
                      "requirements/base.txt": "-r common.txt\n", "requirements/common.txt": "idna\n",
                      "constraints.txt": "idna<4\n", "libs/shared/pyproject.toml": "", "libs/shared/s.py": "",
                      "wheels/w-1.0-py3-none-any.whl": "", "function_app.py": ""})
    assert set(step.inputs) == {"requirements.txt", "requirements/base.txt", "requirements/common.txt",
                                "constraints.txt", "libs/shared/pyproject.toml", "libs/shared/s.py",
                                "wheels/w-1.0-py3-none-any.whl"}


def test_requirements_installing_the_app_itself_key_the_pip_cache_by_the_whole_tree():
    assert only_step({"requirements.txt": "-e .\n", "setup.py": ""}).inputs == ("*",)


def test_the_files_of_a_file_dependency_key_the_npm_cache():
    package = json.dumps({"dependencies": {"shared": "file:libs/shared", "left-pad": "1.3.0"}})
    step = only_step({"package.json": package, "package-lock.json": "{}", "libs/shared/package.json": "{}",
                      "libs/shared/index.js": "", "index.js": ""})
    assert step.inputs == ("package.json", "package-lock.json", "libs/shared/index.js", "libs/shared/package.json")
