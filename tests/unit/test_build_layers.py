"""The store side of builds, on a real store: scratch copies, what a build made taken back as
a layer, the layer cache and its keys."""
import hashlib
import io
import os
import shutil

import pytest

from orchestrator.building.layers import (
    Digest,
    LayerCache,
    collect_output,
    layer_key,
    overlay,
    scratch_copy,
)
from orchestrator.building.plan import BuildStep
from orchestrator.config.steps import BuildConfig
from orchestrator.core.errors import BuildFailed
from orchestrator.releases.integrity import Quarantine
from orchestrator.releases.snapshots import FileEntry, Manifest, SnapshotStore

PIP = BuildStep("pip", ["python3", "-m", "pip", "install", "--target",
                        ".python_packages/lib/site-packages", "-r", "requirements.txt"],
                "requirements.txt", "python3", ("requirements.txt",), ".python_packages")
NPM_BUILD = BuildStep("npm-build", ["npm", "run", "build"], "package.json", "npm", ("*",), "")
EMPTY = Manifest({}, {})


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(tmp_path / "store")


def snapshot(store, files: dict[str, bytes], links: dict[str, str] | None = None,
             executable: frozenset[str] = frozenset()) -> Manifest:
    writer = store.builder()
    for path, data in files.items():
        writer.add_stream(path, io.BytesIO(data), executable=path in executable)
    for path, target in (links or {}).items():
        writer.add_symlink(path, target)
    return writer.seal().manifest


def write(root, path: str, data: bytes) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)


# --- scratch copies -------------------------------------------------------------------------

def test_a_scratch_copy_can_be_rewritten_without_changing_the_stores_blobs(store, tmp_path):
    manifest = snapshot(store, {"requirements.txt": b"requests\n", "app/main.py": b"print(1)\n"})
    scratch = tmp_path / "scratch"
    scratch_copy(store, manifest, scratch)
    for path in ("requirements.txt", "app/main.py"):
        with open(scratch / path, "r+b") as f:      # in place, as a build's tool might
            f.write(b"REWRITTEN")
    for path, data in {"requirements.txt": b"requests\n", "app/main.py": b"print(1)\n"}.items():
        entry = manifest.files[path]
        blob = store.read_blob(entry.sha256)
        assert blob == data
        assert hashlib.sha256(blob).hexdigest() == entry.sha256
        assert not os.path.samefile(scratch / path, store.blob_path(entry.sha256))


def test_a_scratch_copy_keeps_symlinks_as_symlinks_and_executable_bits(store, tmp_path):
    manifest = snapshot(store, {"bin/run.sh": b"#!/bin/sh\n", "lib/a.py": b"a"},
                        links={"current": "lib"}, executable=frozenset({"bin/run.sh"}))
    scratch = tmp_path / "scratch"
    scratch_copy(store, manifest, scratch)
    assert os.readlink(scratch / "current") == "lib"
    assert os.access(scratch / "bin/run.sh", os.X_OK)
    assert not os.access(scratch / "lib/a.py", os.X_OK)
    assert (scratch / "current" / "a.py").read_bytes() == b"a"


def test_a_scratch_copy_refuses_a_folder_already_holding_files(store, tmp_path):
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "left.txt").write_text("from an earlier attempt")
    with pytest.raises(FileExistsError):
        scratch_copy(store, snapshot(store, {"a": b"a"}), tmp_path / "scratch")


# --- what a build made ----------------------------------------------------------------------

@pytest.fixture
def built(store, tmp_path):
    """A source with an older .python_packages, copied to scratch, then 'built'."""
    base = snapshot(store, {"app.py": b"v1", "requirements.txt": b"six\n",
                            ".python_packages/kept.txt": b"same",
                            ".python_packages/changed.txt": b"old"})
    root = tmp_path / "scratch"
    scratch_copy(store, base, root)
    write(root, ".python_packages/lib/site-packages/six.py", b"# six")
    write(root, ".python_packages/changed.txt", b"new")
    write(root, "app.py", b"v2")                 # outside the output folder
    write(root, "stray.log", b"pip's log")        # outside the output folder
    return base, root


def test_collect_output_takes_exactly_the_new_and_changed_files_under_the_output_folder(store, built):
    base, root = built
    written: set[str] = set()
    layer = collect_output(store, root, base, ".python_packages", written)
    assert set(layer.files) == {".python_packages/lib/site-packages/six.py", ".python_packages/changed.txt"}
    assert layer.links == {}
    assert store.read_blob(layer.files[".python_packages/changed.txt"].sha256) == b"new"
    assert written == {e.sha256 for e in layer.files.values()}


def test_collect_output_of_the_whole_tree_takes_every_new_or_changed_file(store, built):
    base, root = built
    layer = collect_output(store, root, base, "")
    assert set(layer.files) == {".python_packages/lib/site-packages/six.py",
                                ".python_packages/changed.txt", "app.py", "stray.log"}


def test_a_file_made_executable_by_the_build_counts_as_changed(store, built):
    base, root = built
    os.chmod(root / ".python_packages/kept.txt", 0o755)
    layer = collect_output(store, root, base, ".python_packages")
    assert layer.files[".python_packages/kept.txt"].executable


def test_an_output_folder_the_build_did_not_make_is_an_empty_layer(store, tmp_path):
    base = snapshot(store, {"app.py": b"v1"})
    scratch_copy(store, base, tmp_path / "scratch")
    assert collect_output(store, tmp_path / "scratch", base, "node_modules") == EMPTY


def test_symlinks_inside_the_tree_are_kept(store, tmp_path):
    base = snapshot(store, {"package.json": b"{}"})
    root = tmp_path / "scratch"
    scratch_copy(store, base, root)
    write(root, "node_modules/tool/cli.js", b"#!/usr/bin/env node")
    os.makedirs(root / "node_modules/.bin")
    os.symlink("../tool/cli.js", root / "node_modules/.bin/tool")
    layer = collect_output(store, root, base, "node_modules")
    assert layer.links == {"node_modules/.bin/tool": "../tool/cli.js"}


@pytest.mark.parametrize("target", ["../../../etc", "/etc/passwd", "../../../../outside"])
def test_collect_output_refuses_a_symlink_leaving_the_tree_naming_it(store, tmp_path, target):
    base = snapshot(store, {"package.json": b"{}"})
    root = tmp_path / "scratch"
    scratch_copy(store, base, root)
    os.makedirs(root / "node_modules/evil")
    os.symlink(target, root / "node_modules/evil/link")
    with pytest.raises(BuildFailed, match="node_modules/evil/link"):
        collect_output(store, root, base, "node_modules")


def test_an_output_folder_that_is_itself_a_link_out_of_the_tree_is_refused(store, tmp_path):
    base = snapshot(store, {"requirements.txt": b"six\n"})
    root = tmp_path / "scratch"
    scratch_copy(store, base, root)
    os.symlink(str(tmp_path / "store"), root / ".python_packages")
    with pytest.raises(BuildFailed, match=r"\.python_packages"):
        collect_output(store, root, base, ".python_packages")


def test_a_fifo_left_by_the_build_is_refused_naming_it_without_blocking(store, tmp_path):
    base = snapshot(store, {"package.json": b"{}"})
    root = tmp_path / "scratch"
    scratch_copy(store, base, root)
    os.makedirs(root / "node_modules")
    os.mkfifo(root / "node_modules/pipe")
    with pytest.raises(BuildFailed, match="node_modules/pipe"):
        collect_output(store, root, base, "node_modules")


def test_the_last_steps_files_move_into_the_store_as_read_only_blobs_young_to_the_collector(store, built):
    """After the last step nothing runs in the scratch folder: its files become the blobs
    instead of being written again (a first build's output is thousands of files)."""
    base, root = built
    made = root / ".python_packages/lib/site-packages/six.py"
    os.utime(made, (499_162_500, 499_162_500))          # npm and tar keep a package's old times
    inode = os.stat(made).st_ino
    written: set[str] = set()

    layer = collect_output(store, root, base, ".python_packages", written, move=True)

    blob = store.blob_path(layer.files[".python_packages/lib/site-packages/six.py"].sha256)
    assert os.stat(blob).st_ino == inode and not made.exists()
    assert open(blob, "rb").read() == b"# six" and os.stat(blob).st_mode & 0o777 == 0o444
    assert os.stat(blob).st_mtime > 499_162_500 + 10 * 365 * 86400    # not older than the grace
    assert written == {e.sha256 for e in layer.files.values()}


def test_a_file_with_another_name_is_copied_into_the_store_not_moved(store, built, tmp_path):
    """A build may hardlink its output to a file of the build home (a cache) that the next
    build rewrites in place: that inode must not become a blob."""
    base, root = built
    cached = tmp_path / "build-home/cache/six.py"
    write(tmp_path, "build-home/cache/six.py", b"# six, cached")
    os.link(cached, root / ".python_packages/linked.py")

    layer = collect_output(store, root, base, ".python_packages", move=True)
    with open(cached, "r+b") as f:
        f.write(b"REWRITTEN")

    entry = layer.files[".python_packages/linked.py"]
    assert store.read_blob(entry.sha256) == b"# six, cached"
    assert not os.path.samefile(cached, store.blob_path(entry.sha256))


def test_a_file_whose_blob_the_store_holds_leaves_the_blob_as_it_was(store, built):
    base, root = built
    held = store.blob_path(base.files[".python_packages/kept.txt"].sha256)
    inode = os.stat(held).st_ino
    write(root, ".python_packages/again.txt", b"same")

    layer = collect_output(store, root, base, ".python_packages", move=True)

    assert layer.files[".python_packages/again.txt"].sha256 == base.files[".python_packages/kept.txt"].sha256
    assert os.stat(held).st_ino == inode


# --- overlays -------------------------------------------------------------------------------

def test_an_overlay_puts_the_layer_over_the_base_and_target_output_replaces_it():
    base = Manifest({"app.py": FileEntry("a" * 64, 1), "node_modules": FileEntry("b" * 64, 1)},
                    {"link": "app.py"})
    layer = Manifest({"app.py": FileEntry("c" * 64, 2), "node_modules/x.js": FileEntry("d" * 64, 3)}, {})
    assert overlay(base, layer, "") == Manifest(
        {"app.py": FileEntry("c" * 64, 2), "node_modules/x.js": FileEntry("d" * 64, 3)},
        {"link": "app.py"})
    assert overlay(base, layer, "@target") == layer


def test_an_overlay_replaces_a_base_folder_with_the_layers_file_or_link():
    base = Manifest({"dist/a.js": FileEntry("a" * 64, 1), "dist/sub/b.js": FileEntry("b" * 64, 1)}, {})
    layer = Manifest({}, {"dist": "build"})
    assert overlay(base, layer, "") == Manifest({}, {"dist": "build"})


# --- the layer cache ------------------------------------------------------------------------

KEY = "ab" * 32


def test_the_layer_cache_gives_back_what_was_put_under_a_key(store, built):
    base, root = built
    layer = collect_output(store, root, base, ".python_packages")
    cache = LayerCache(store)
    assert cache.get(KEY) is None
    cache.put(KEY, layer)
    assert LayerCache(store).get(KEY) == layer
    assert cache.keys() == {KEY}
    assert (store.root / "layers" / f"{KEY}.json").read_bytes() == layer.canonical()
    cache.remove(KEY)
    assert cache.get(KEY) is None and cache.keys() == set()


def test_a_layer_naming_a_blob_gone_from_the_store_is_a_miss(store, built):
    base, root = built
    layer = collect_output(store, root, base, ".python_packages")
    cache = LayerCache(store)
    cache.put(KEY, layer)
    os.unlink(store.blob_path(layer.files[".python_packages/changed.txt"].sha256))
    assert cache.get(KEY) is None


def test_a_garbled_layer_file_is_a_miss(store):
    cache = LayerCache(store)
    (store.root / "layers" / f"{KEY}.json").write_text("{not json")
    assert cache.get(KEY) is None


def test_a_layer_key_that_is_not_a_sha256_is_refused(store):
    with pytest.raises(ValueError):
        LayerCache(store).put("../../releases/app", EMPTY)


# --- layer keys -----------------------------------------------------------------------------

FILES = {"requirements.txt": b"six==1.16.0\n", "app.py": b"print(1)\n"}
CONFIG = BuildConfig(env={"PIP_NO_INDEX": "1"})


def key(step=PIP, config=CONFIG, files=FILES, tool="Python 3.11.2", platform="linux-x86_64"):
    return layer_key(step, config, files, tool, platform)


def test_a_layer_key_is_the_same_for_the_same_inputs_and_ignores_unrelated_files():
    assert key() == key(files={**FILES})
    assert key() == key(files={**FILES, "app.py": b"print(2)\n", "new.py": b""})


def test_a_layer_key_given_an_inputs_digest_is_the_key_given_its_bytes():
    digest = Digest(hashlib.sha256(FILES["requirements.txt"]).hexdigest())     # the store blob's name
    assert key(files={**FILES, "requirements.txt": digest}) == key()


def test_a_layer_key_changes_with_an_inputs_bytes():
    assert key() != key(files={**FILES, "requirements.txt": b"six==1.17.0\n"})
    assert key() != key(files={"app.py": FILES["app.py"]})     # requirements.txt gone


def test_a_layer_key_changes_with_the_builds_env():
    assert key() != key(config=BuildConfig(env={"PIP_NO_INDEX": "0"}))
    assert key() != key(config=BuildConfig(env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/w"}))
    assert key() == key(config=BuildConfig(env={"PIP_NO_INDEX": "1"}, timeout=60))


def test_a_layer_key_changes_with_the_tool_version_the_platform_and_the_command():
    assert key() != key(tool="Python 3.12.1")
    assert key() != key(platform="linux-aarch64")
    other = BuildStep(PIP.name, [*PIP.command, "--no-deps"], PIP.asked_by, PIP.tool, PIP.inputs, PIP.output)
    assert key() != key(step=other)


def test_a_whole_tree_step_key_changes_with_any_file():
    assert key(NPM_BUILD, files={"*": "snapshot-1"}) != key(NPM_BUILD, files={"*": "snapshot-2"})
    assert key(NPM_BUILD) != key(NPM_BUILD, files={**FILES, "app.py": b"print(2)\n"})
    assert key(NPM_BUILD, files={"*": "snapshot-1"}) == key(NPM_BUILD, files={"*": "snapshot-1"})


def test_a_step_copied_out_of_the_scratch_tree_survives_its_removal(store, built):
    base, root = built
    layer = collect_output(store, root, base, ".python_packages")
    shutil.rmtree(root)
    assert store.read_blob(layer.files[".python_packages/lib/site-packages/six.py"].sha256) == b"# six"


def test_a_layer_read_once_is_not_read_again_until_its_file_changes(store, built, monkeypatch):
    base, root = built
    layer = collect_output(store, root, base, ".python_packages")
    LayerCache(store).put(KEY, layer)
    parsed = []
    real = Manifest.parse
    monkeypatch.setattr(Manifest, "parse", staticmethod(lambda data: parsed.append(1) or real(data)))

    assert LayerCache(store).get(KEY) == layer and LayerCache(store).get(KEY) == layer
    assert len(parsed) == 1
    LayerCache(store).put(KEY, EMPTY)       # a new file: read again
    assert LayerCache(store).get(KEY) == EMPTY and len(parsed) == 2


def test_a_layer_read_before_whose_blob_is_then_quarantined_is_a_miss(store, built):
    base, root = built
    layer = collect_output(store, root, base, ".python_packages")
    LayerCache(store).put(KEY, layer)
    assert LayerCache(store).get(KEY) == layer

    Quarantine(store).add_blob(layer.files[".python_packages/changed.txt"].sha256)

    assert LayerCache(store).get(KEY) is None
