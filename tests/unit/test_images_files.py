"""The file store and layer manifests: files stored once by content and metadata, layers made again from them."""

import os
import stat

from test_images_support import require

from shoal.images.manifest import scan
from shoal.images.store import LayerStore

MTIME = 1_700_000_000_000_000_000


def write(root: str, rel: str, content: bytes, mode: int = 0o644, owner=(0, 0), mtime: int = MTIME) -> str:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    os.chown(path, *owner)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime, mtime))
    return path


async def layer(store: LayerStore, layer_id: str, fill) -> str:
    async with store.building(layer_id) as root:
        fill(root)
    return store.layer_dir(layer_id)


async def test_a_file_in_two_layers_is_stored_once(tmp_path):
    require()
    store = LayerStore(str(tmp_path))
    content = b"x" * 10_000
    a = await layer(store, "a", lambda root: write(root, "usr/lib/lib.so", content))
    b = await layer(store, "b", lambda root: write(root, "opt/copy.so", content))
    usage = store.files.usage()
    assert (usage.count, usage.bytes) == (1, len(content))
    # Both layers' files are the stored object itself: no second copy on disk.
    inodes = {os.stat(os.path.join(a, "usr/lib/lib.so")).st_ino, os.stat(os.path.join(b, "opt/copy.so")).st_ino}
    assert len(inodes) == 1 and os.stat(os.path.join(a, "usr/lib/lib.so")).st_nlink == 3


async def test_same_bytes_with_other_metadata_are_other_objects(tmp_path):
    require()
    store = LayerStore(str(tmp_path))
    variants = {
        "plain": {},
        "mode": {"mode": 0o755},
        "owner": {"owner": (1000, 1000)},
        "mtime": {"mtime": MTIME + 1},
    }
    for name, meta in variants.items():
        await layer(store, name, lambda root, meta=meta: write(root, "f", b"same", **meta))
    assert store.files.usage().count == len(variants)
    st = {name: os.stat(os.path.join(store.layer_dir(name), "f")) for name in variants}
    assert stat.S_IMODE(st["mode"].st_mode) == 0o755 and stat.S_IMODE(st["plain"].st_mode) == 0o644
    assert (st["owner"].st_uid, st["owner"].st_gid) == (1000, 1000) and st["plain"].st_uid == 0
    assert st["mtime"].st_mtime_ns == MTIME + 1 and st["plain"].st_mtime_ns == MTIME


def fill_everything(root: str) -> None:
    """A layer with each kind of entry an overlayfs upper dir can hold."""
    write(root, "bin/tool", b"#!/bin/sh\n", mode=0o4755)
    write(root, "home/app/notes", b"mine", mode=0o600, owner=(1000, 1001))
    write(root, "home/app/hardlink-source", b"twice")
    os.link(os.path.join(root, "home/app/hardlink-source"), os.path.join(root, "home/app/hardlink"))
    write(root, "empty", b"")
    os.chown(os.path.join(root, "home/app"), 1000, 1001)
    os.chmod(os.path.join(root, "home/app"), 0o750)
    os.symlink("../bin/tool", os.path.join(root, "home/link"))
    os.lchown(os.path.join(root, "home/link"), 1000, 1001)
    os.mknod(os.path.join(root, "home/deleted"), stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    os.mkfifo(os.path.join(root, "fifo"), 0o640)
    os.makedirs(os.path.join(root, "var/cache"))
    os.setxattr(os.path.join(root, "var/cache"), "trusted.overlay.opaque", b"y")
    os.setxattr(os.path.join(root, "var/cache"), "trusted.overlay.origin", b"\x00\x01")  # overlayfs bookkeeping
    os.setxattr(os.path.join(root, "bin/tool"), "user.note", b"kept")
    os.utime(os.path.join(root, "home"), ns=(MTIME, MTIME))


def comparable(root: str):
    """The manifest of a directory, without what differs between two copies (their file-store keys are equal)."""
    return [(e.path, e.mode, e.uid, e.gid, e.size, e.key, e.target, e.rdev, e.xattrs) for e in scan(root).entries] + [
        (e.path, e.mtime_ns) for e in scan(root).entries if e.path != "."
    ]


async def test_a_layer_directory_is_made_again_from_its_manifest(tmp_path):
    require()
    store = LayerStore(str(tmp_path))
    built = await layer(store, "l", fill_everything)
    before = comparable(built)
    os.rename(built, str(tmp_path / "set-aside"))
    assert await store.ensure(["l"]) == [built]
    assert comparable(built) == before
    # Metadata, whiteouts, opaque dirs and symlinks are back; files are links to the store's objects.
    st = os.lstat(os.path.join(built, "home/deleted"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(built, "var/cache"), "trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.origin" not in os.listxattr(os.path.join(built, "var/cache"))
    assert os.getxattr(os.path.join(built, "bin/tool"), "user.note") == b"kept"
    assert stat.S_IMODE(os.stat(os.path.join(built, "bin/tool")).st_mode) == 0o4755
    assert os.readlink(os.path.join(built, "home/link")) == "../bin/tool"
    assert os.lstat(os.path.join(built, "home/link")).st_uid == 1000
    assert os.stat(os.path.join(built, "home/app")).st_mode & 0o777 == 0o750
    assert os.stat(os.path.join(built, "home")).st_mtime_ns == MTIME
    assert (
        os.stat(os.path.join(built, "home/app/hardlink")).st_ino
        == os.stat(os.path.join(built, "home/app/hardlink-source")).st_ino
    )
    manifest = store.manifest("l")
    for entry in manifest.files:
        assert os.stat(os.path.join(built, entry.path)).st_ino == os.stat(store.files.path(entry.key)).st_ino


async def test_ensure_lists_present_layers_without_touching_them(tmp_path):
    store = LayerStore(str(tmp_path))
    dirs = [await layer(store, f"l{i}", lambda root, i=i: write(root, f"f{i}", b"%d" % i)) for i in range(3)]
    inodes = [os.stat(d).st_ino for d in dirs]
    assert await store.ensure(["l0", "l1", "l2"]) == dirs
    assert [os.stat(d).st_ino for d in dirs] == inodes


async def test_layer_sizes_count_every_file(tmp_path):
    store = LayerStore(str(tmp_path))
    await layer(store, "l", lambda root: (write(root, "a", b"12345"), write(root, "b/c", b"123")))
    size = store.size("l")
    assert (size.files, size.bytes) == (2, 8)
