"""Volumes: named and ephemeral ones on both stores, and their files, which containers may have
filled with symlinks the server must never follow."""

import hashlib
import os
import time

import pytest
from modal_proto import api_pb2

from shoal.control import volume_files
from shoal.control.errors import AlreadyExists, InvalidArgument, NotFound
from shoal.control.named_objects import EPHEMERAL_TIMEOUT
from shoal.control.volumes import Volumes
from shoal.store.blobs import BlobStore

Creation = api_pb2.ObjectCreationType
V2 = api_pb2.VOLUME_FS_VERSION_V2
FILE, DIRECTORY, SYMLINK = (api_pb2.FileEntry.FileType.Value(n) for n in ("FILE", "DIRECTORY", "SYMLINK"))


@pytest.fixture
def volumes(db, tmp_path):
    return Volumes(db, BlobStore(str(tmp_path / "blobs")), str(tmp_path / "volumes"))


async def test_named_volumes_are_created_found_renamed_and_deleted(volumes):
    with pytest.raises(NotFound, match="Volume 'v' not found in environment 'main'"):
        await volumes.get_or_create("v", "", Creation.OBJECT_CREATION_TYPE_UNSPECIFIED, 0)
    created = await volumes.get_or_create("v", "", Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS, 0)
    await volumes.listing(created.object_id, "/", recursive=False)  # its directory is made at its first use
    assert os.path.isdir(volumes.directory(created.object_id))
    with pytest.raises(AlreadyExists):
        await volumes.get_or_create("v", "main", Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS, 0)
    again = await volumes.get_or_create("v", "main", Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING, 0)
    assert again.object_id == created.object_id
    other = await volumes.get_or_create("w", "", Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING, 0)
    with pytest.raises(AlreadyExists):
        await volumes.objects.rename(other.object_id, "v")
    await volumes.objects.rename(other.object_id, "w2")
    assert [v.name for v in await volumes.objects.in_environment("", 0, 0)] == ["w2", "v"]
    await volumes.delete(created.object_id)
    assert not os.path.exists(volumes.directory(created.object_id))
    with pytest.raises(NotFound):
        await volumes.objects.get(created.object_id)


async def test_bad_names_and_versions_are_refused(volumes):
    for name in ("", "a/b", "x" * 65, "ap-" + "a" * 22):
        with pytest.raises(InvalidArgument, match="Invalid volume name"):
            await volumes.get_or_create(name, "", Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING, 0)
    with pytest.raises(InvalidArgument, match="v1 volumes only"):
        await volumes.get_or_create(
            "v", "", Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING, api_pb2.VOLUME_FS_VERSION_V2
        )


async def test_an_ephemeral_volume_lives_while_its_heartbeats_come(volumes):
    eph = await volumes.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_EPHEMERAL, 0)
    named = await volumes.get_or_create("kept", "", Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING, 0)
    assert await volumes.objects.in_environment("", 0, 0) == [named]  # ephemeral ones are not listed
    await volumes.listing(eph.object_id, "/", recursive=False)  # its directory is made
    await volumes.objects.heartbeat(eph.object_id)
    assert await volumes.objects.expired(time.time() + EPHEMERAL_TIMEOUT / 2) == []
    assert await volumes.objects.expired(time.time() + EPHEMERAL_TIMEOUT * 2) == [eph.object_id]  # not `named`
    await volumes.delete(eph.object_id)
    with pytest.raises(NotFound):
        await volumes.objects.get(eph.object_id)
    assert not os.path.exists(volumes.directory(eph.object_id))


async def test_files_are_put_listed_copied_read_and_removed(volumes):
    vol = await volumes.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_EPHEMERAL, 0)
    files = [_uploaded(volumes, "/a/b.txt", b"hello", 0o4755), _uploaded(volumes, "top.txt", b"", 0o644)]
    await volumes.put(vol.object_id, files, overwrite=False)
    with pytest.raises(AlreadyExists, match="top.txt already exists"):
        await volumes.put(vol.object_id, [_uploaded(volumes, "new.txt", b"x", 0), files[1]], overwrite=False)
    with pytest.raises(NotFound):  # nothing of a refused batch was written
        await volumes.size(vol.object_id, "new.txt")
    with pytest.raises(InvalidArgument, match="a is a directory"):
        await volumes.put(vol.object_id, [_uploaded(volumes, "a", b"x", 0)], overwrite=True)
    await volumes.copy(vol.object_id, ["a/b.txt"], "a/c.txt")
    await volumes.copy(vol.object_id, ["a/b.txt", "top.txt"], "d")  # several sources: into a directory
    listed = [(e.path, e.type, e.size) for e in await volumes.listing(vol.object_id, "/", recursive=True)]
    assert listed == [
        ("a", DIRECTORY, listed[0][2]),
        ("a/b.txt", FILE, 5),
        ("a/c.txt", FILE, 5),
        ("d", DIRECTORY, listed[3][2]),
        ("d/b.txt", FILE, 5),
        ("d/top.txt", FILE, 0),
        ("top.txt", FILE, 0),
    ]
    assert [e.path for e in await volumes.listing(vol.object_id, "a/b.txt", recursive=False)] == ["a/b.txt"]
    mode = os.stat(os.path.join(volumes.directory(vol.object_id), "a/b.txt")).st_mode
    assert mode & 0o7777 == 0o755  # no set-id bits from a client
    assert await volumes.read(vol.object_id, "a/b.txt", 1, 3) == b"ell"
    with pytest.raises(InvalidArgument, match="a is a directory; remove it recursively"):
        await volumes.remove(vol.object_id, "a", recursive=False)
    await volumes.remove(vol.object_id, "a", recursive=True)
    with pytest.raises(NotFound, match="No such file or directory: a/b.txt"):
        await volumes.read(vol.object_id, "a/b.txt", 0, 1)
    with pytest.raises(InvalidArgument, match="root cannot be removed"):
        await volumes.remove(vol.object_id, "/", recursive=True)


def test_paths_that_climb_out_are_refused():
    for path in ("..", "a/../..", "/a/../../etc", "a\0b"):
        with pytest.raises(InvalidArgument):
            volume_files.parts(path)
    assert volume_files.parts("//a/./b/") == ["a", "b"]


def test_symlinks_a_container_left_are_never_followed(tmp_path):
    root, outside = tmp_path / "vol", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    os.symlink(outside / "secret", root / "leak")
    os.symlink(outside, root / "escape")
    source = tmp_path / "source"
    source.write_text("planted")

    with pytest.raises(InvalidArgument, match="leak is not a regular file"):
        volume_files.read(str(root), "leak", 0, 100)
    with pytest.raises(InvalidArgument, match="escape is not a directory"):
        volume_files.read(str(root), "escape/secret", 0, 100)
    with pytest.raises(InvalidArgument, match="escape is not a directory"):
        volume_files.write(str(root), "escape/planted", str(source), 0o644)
    assert [(e.path, e.type) for e in volume_files.listing(str(root), "escape", recursive=True)] == [
        ("escape", SYMLINK)
    ]
    with pytest.raises(InvalidArgument, match="escape is not a directory"):
        volume_files.listing(str(root), "escape/secret", recursive=True)
    with pytest.raises(InvalidArgument, match="leak is not a regular file"):
        volume_files.copy(str(root), ["leak"], "copied")
    listed = {e.path: e.type for e in volume_files.listing(str(root), "", recursive=True)}
    assert listed == {"escape": SYMLINK, "leak": SYMLINK}  # listed as links, not walked into

    volume_files.write(str(root), "leak", str(source), 0o644)  # replaces the link, not its target
    assert (root / "leak").read_text() == "planted" and not (root / "leak").is_symlink()
    volume_files.remove(str(root), "escape", recursive=True)  # removes the link only
    assert (outside / "secret").read_text() == "host secret"
    assert sorted(os.listdir(outside)) == ["secret"]


async def test_mounts_of_a_sub_path_stay_inside_the_volume(volumes):
    vol = await volumes.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_EPHEMERAL, 0)
    Mount = api_pb2.VolumeMount
    mounts = [
        Mount(volume_id=vol.object_id, mount_path="/whole"),
        Mount(volume_id=vol.object_id, mount_path="/part", sub_path="/users/me/", read_only=True),
    ]
    await volumes.check_mounts(mounts)
    assert await volumes.binds(mounts) == [
        (vol.object_id, "", "/whole", False),
        (vol.object_id, "users/me", "/part", True),
    ]
    for sub_path in ("..", "../other", "a/../../b"):
        climbing = Mount(volume_id=vol.object_id, mount_path="/up", sub_path=sub_path)
        with pytest.raises(InvalidArgument, match="must stay inside the volume"):
            await volumes.check_mounts([climbing])
        with pytest.raises(InvalidArgument, match="must stay inside the volume"):
            await volumes.binds([climbing])  # what a sandbox's mounts go through


def test_a_sub_path_directory_is_made_and_never_reached_through_a_symlink(tmp_path):
    root, outside = tmp_path / "vol", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    fd = volume_files.open_directory(str(root), "/a/b/")
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(root / "a" / "b"))
    finally:
        os.close(fd)
    os.symlink(outside, root / "link")
    for path in ("link", "link/made"):
        with pytest.raises(InvalidArgument, match="link is not a directory"):
            volume_files.open_directory(str(root), path)
    assert os.listdir(outside) == []


def _uploaded(volumes: Volumes, path: str, data: bytes, mode: int) -> api_pb2.MountFile:
    sha = hashlib.sha256(data).hexdigest()
    volumes.blobs.put_verified(sha, data)
    return api_pb2.MountFile(filename=path, sha256_hex=sha, mode=mode)
