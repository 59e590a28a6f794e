"""Steps in one deployment's scratch folder (deploying/build.py's Scratch): a step that others
follow leaves its files where they run, the last one's files move into the store."""
import io
import os
import sys

import pytest

from orchestrator.building.plan import BuildStep
from orchestrator.config.settings import AppConfig
from orchestrator.deploying.build import BuildContext, Scratch
from orchestrator.releases.snapshots import SnapshotStore


def step(name: str, line: str, output: str) -> BuildStep:
    return BuildStep(name, ["/bin/sh", "-c", line], "test", "sh", ("*",), output)


@pytest.fixture
def scratch(tmp_path):
    store = SnapshotStore(tmp_path / "data" / "store")
    writer = store.builder()
    writer.add_stream("app.py", io.BytesIO(b"print(1)\n"))
    config = AppConfig.model_validate({"target": str(tmp_path / "site"), "build": {"sandbox": "off"}})
    ctx = BuildContext(store, tmp_path / "data", "app", "d1", config, lambda *a, **k: None)
    yield Scratch(ctx), writer.seal().manifest, store
    Scratch(ctx).remove()


def test_a_step_others_follow_leaves_its_files_for_them_and_the_last_moves_its_own(scratch):
    runner, manifest, store = scratch
    first = runner.run(step("first", "mkdir -p deps && echo dep > deps/a.txt", "deps"), manifest)
    made = runner.root / "src" / "deps" / "a.txt"
    assert made.exists()
    assert not os.path.samefile(made, store.blob_path(first.files["deps/a.txt"].sha256))

    # the next step may rewrite what the first made: the first's blob must not change
    last = runner.run(step("last", "echo changed >> deps/a.txt && mkdir -p dist && echo out > dist/b.txt",
                           "dist"), manifest, last=True)

    assert store.read_blob(first.files["deps/a.txt"].sha256) == b"dep\n"
    assert store.read_blob(last.files["dist/b.txt"].sha256) == b"out\n"
    assert not (runner.root / "src" / "dist" / "b.txt").exists()        # moved, not copied


RENAME_FROM_TMPDIR = """import os, tempfile
fd, made = tempfile.mkstemp()
os.write(fd, b"installed\\n")
os.makedirs("out")
os.rename(made, "out/pkg.txt")
"""


def test_a_file_made_in_tmpdir_renames_into_the_tree_under_the_sandbox(tmp_path):
    """pip --target installs into TMPDIR, then renames into the tree: were TMPDIR on another
    of bwrap's bind mounts, the rename would fail (EXDEV) and pip would copy every file."""
    from orchestrator.building.command import sandbox_for
    if sandbox_for("auto", []) is None:
        pytest.skip("bwrap is not installed here, or cannot run (no user namespaces)")
    store = SnapshotStore(tmp_path / "data" / "store")
    writer = store.builder()
    writer.add_stream("app.py", io.BytesIO(b"print(1)\n"))
    config = AppConfig.model_validate({"target": str(tmp_path / "site"), "build": {"sandbox": "on"}})
    runner = Scratch(BuildContext(store, tmp_path / "data", "app", "d1", config, lambda *a, **k: None))
    pip = BuildStep("pip", [sys.executable, "-c", RENAME_FROM_TMPDIR], "test", "python3", ("*",), "out")

    layer = runner.run(pip, writer.seal().manifest, last=True)

    assert store.read_blob(layer.files["out/pkg.txt"].sha256) == b"installed\n"
