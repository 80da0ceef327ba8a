"""Base images made from files on this machine, for hosts that reach no registry.

`shoal images import NAME SOURCE` copies a root file system into the layer store (a directory,
or a tar archive of one such as `docker export` writes) and names it; `FROM NAME`, which is
`Image.from_registry(NAME)`, then starts from it. The name is kept beside the layers
(imported/NAME.json) and garbage collection keeps what it names. Importing the same unchanged
source again copies nothing.
"""

import asyncio
import hashlib
import os
import re
import subprocess
from urllib.parse import quote

from .spec import BuiltImage, ImageConfig
from .store import LayerStore

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]*(:[\w][\w.-]*)?")
_PYTHON = re.compile(r"python(3\.\d+)")


class ImportFailed(Exception):
    """A name or source that cannot be imported, said so that the user can fix it."""


def _names_dir(store: LayerStore) -> str:
    return os.path.join(store.root, "imported")


def _name_path(store: LayerStore, name: str) -> str:
    return os.path.join(_names_dir(store), quote(name, safe="") + ".json")


def imported(store: LayerStore, ref: str) -> BuiltImage | None:
    """The image imported under `ref`, if any."""
    try:
        with open(_name_path(store, ref)) as f:
            return BuiltImage.from_json(f.read())
    except FileNotFoundError:
        return None


def imported_layer_ids(store: LayerStore) -> set[str]:
    directory = _names_dir(store)
    if not os.path.isdir(directory):
        return set()
    layers = set()
    for entry in os.listdir(directory):
        with open(os.path.join(directory, entry)) as f:
            layers.update(BuiltImage.from_json(f.read()).layers)
    return layers


async def import_rootfs(store: LayerStore, name: str, source: str, python: str | None = None) -> BuiltImage:
    """Copy the root file system at `source` into the store as the image `name`."""
    if not _NAME.fullmatch(name):
        raise ImportFailed(
            f"{name!r} is not an image name: use lower-case letters, digits, '.', '_', '-', '/' and a :tag"
        )
    if python and not re.fullmatch(r"3\.\d+", python):
        raise ImportFailed(f"--python takes a version such as 3.12, not {python!r}")
    if not os.path.exists(source):
        raise ImportFailed(f"{source} does not exist on the machine shoal runs on")
    layer_id = await asyncio.to_thread(_fingerprint, source)
    async with store.lease():  # garbage collection leaves the layer alone until its name is written
        copied = False
        async with store.building(layer_id) as root:
            if root is not None:
                await asyncio.to_thread(_copy, source, root)
                copied = True
        python = python or await asyncio.to_thread(_python_version, store.layer_dir(layer_id))
        if python is None:
            raise ImportFailed(
                f"found no python3 in {source}'s /usr/bin or /usr/local/bin: say which Python it runs with --python"
            )
        image = BuiltImage([layer_id], ImageConfig(env={"PATH": DEFAULT_PATH}, python_version=python), int(copied))
        os.makedirs(_names_dir(store), exist_ok=True)
        path = _name_path(store, name)
        with open(path + ".tmp", "w") as f:
            f.write(image.to_json())
        os.replace(path + ".tmp", path)
    return image


def _fingerprint(source: str) -> str:
    """The layer id of what `source` holds now: a directory by every entry's path, type, mode,
    owner, size, time and link target (no file is read); an archive by its bytes."""
    digest = hashlib.sha256(b"shoal-import-1\0")
    if not os.path.isdir(source):
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()
    for top, dirs, files in os.walk(source):
        dirs.sort()
        for entry in sorted(dirs + files):
            path = os.path.join(top, entry)
            st = os.lstat(path)
            target = os.readlink(path) if os.path.islink(path) else ""
            fields = (
                os.path.relpath(path, source),
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                target,
            )
            digest.update("\0".join(map(str, fields)).encode() + b"\n")
    return digest.hexdigest()


def _copy(source: str, root: str) -> None:
    """Everything under `source`, owners, modes, links and extended attributes kept."""
    if os.path.isdir(source):
        command = ["cp", "-a", "--", os.path.join(source, "."), root]
    else:  # tar finds the compression by itself
        command = ["tar", "-xpf", source, "-C", root, "--numeric-owner", "--xattrs", "--xattrs-include=*"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImportFailed(f"copying {source} failed: {result.stderr.strip()[-2000:]}")


def _python_version(root: str) -> str | None:
    """The series of the image's python3 (`3.12`), from where /usr/bin/python3 leads."""
    for directory in ("usr/local/bin", "usr/bin"):
        link = os.path.join(root, directory, "python3")
        if os.path.islink(link) and (m := _PYTHON.search(os.readlink(link))):
            return m.group(1)
        found = sorted(
            (m.group(1) for e in _listdir(os.path.join(root, directory)) if (m := _PYTHON.fullmatch(e))),
            key=lambda v: int(v.split(".")[1]),
        )
        if found:
            return found[-1]
    return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
