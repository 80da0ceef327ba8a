"""Base images imported from this machine's files (images/imported.py)."""

import os
import subprocess

import pytest

from shoal.images.base import BaseResolver
from shoal.images.imported import ImportFailed, import_rootfs, imported, imported_layer_ids
from shoal.images.store import LayerStore


def _rootfs(path, python="python3.12") -> str:
    """A tiny root file system with a python3 link, a file and a link of each kind."""
    (path / "usr" / "bin").mkdir(parents=True)
    (path / "usr" / "bin" / python).write_text("#!/bin/false\n")
    (path / "usr" / "bin" / "python3").symlink_to(python)
    (path / "bin").symlink_to("usr/bin")
    (path / "etc").mkdir()
    (path / "etc" / "marker").write_text("imported\n")
    os.chmod(path / "etc" / "marker", 0o640)
    return str(path)


async def test_a_directory_becomes_a_named_image_that_from_resolves(tmp_path):
    store = LayerStore(str(tmp_path / "store"))
    source = _rootfs(tmp_path / "root")
    image = await import_rootfs(store, "site/torch:1", source)
    assert image.config.python_version == "3.12" and image.built == 1
    layer = store.layer_dir(image.layers[0])
    assert open(os.path.join(layer, "etc", "marker")).read() == "imported\n"
    assert os.stat(os.path.join(layer, "etc", "marker")).st_mode & 0o777 == 0o640
    assert os.readlink(os.path.join(layer, "bin")) == "usr/bin"
    logged = []
    assert await BaseResolver(store)("site/torch:1", logged.append) == image  # before any registry
    assert "imported on this machine" in logged[0]
    assert imported(store, "site/torch:2") is None
    assert imported_layer_ids(store) == set(image.layers)  # what garbage collection keeps

    again = await import_rootfs(store, "site/torch:1", source)
    assert again.layers == image.layers and again.built == 0  # unchanged: nothing copied
    (tmp_path / "root" / "etc" / "marker").write_text("changed\n")
    changed = await import_rootfs(store, "site/torch:1", source)
    assert changed.layers != image.layers and imported(store, "site/torch:1") == changed


async def test_a_tar_archive_imports_as_its_directory_would(tmp_path):
    store = LayerStore(str(tmp_path / "store"))
    source = _rootfs(tmp_path / "root", python="python3.11")
    archive = tmp_path / "root.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), "-C", source, "."], check=True)
    image = await import_rootfs(store, "exported", str(archive))
    assert image.config.python_version == "3.11"
    assert open(os.path.join(store.layer_dir(image.layers[0]), "etc", "marker")).read() == "imported\n"


async def test_what_cannot_be_imported_says_why(tmp_path):
    store = LayerStore(str(tmp_path / "store"))
    source = _rootfs(tmp_path / "root")
    with pytest.raises(ImportFailed, match="is not an image name"):
        await import_rootfs(store, "Not A Name", source)
    with pytest.raises(ImportFailed, match="does not exist"):
        await import_rootfs(store, "x", str(tmp_path / "nowhere"))
    with pytest.raises(ImportFailed, match="--python takes a version"):
        await import_rootfs(store, "x", source, python="twelve")
    (tmp_path / "bare").mkdir()
    with pytest.raises(ImportFailed, match="found no python3"):
        await import_rootfs(store, "bare", str(tmp_path / "bare"))
    assert imported(store, "bare") is None
    assert (await import_rootfs(store, "bare", str(tmp_path / "bare"), python="3.13")).config.python_version == "3.13"
