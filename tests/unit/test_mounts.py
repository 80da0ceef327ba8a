"""Mounts and the blob store under them take only paths and hashes that stay inside their roots."""

import hashlib
import os
import stat

import pytest
from modal_proto import api_pb2

from shoal.control.errors import InvalidArgument
from shoal.control.mounts import Mounts, contained_path
from shoal.store.blobs import BlobStore


def test_a_blob_is_named_by_a_digest_only(tmp_path):
    blobs = BlobStore(str(tmp_path / "blobs"))
    digest = blobs.put(b"data")
    assert blobs.has(digest) and blobs.get(digest) == b"data"
    (tmp_path / "secret").write_text("not a blob")
    for name in ("../secret", "../../" + str(tmp_path / "secret"), digest.upper(), digest[:-1]):
        assert not blobs.has(name)
        with pytest.raises(ValueError, match="not a sha256"):
            blobs.path(name)


def test_client_paths_stay_below_the_root():
    assert contained_path("/root/app.py", "Mount file") == "/root/app.py"
    assert contained_path("pkg//mod.py", "Mount file") == "/pkg/mod.py"
    for name in ("", "/", "../etc/passwd", "/a/../../etc/passwd", "a/..", "a\0b"):
        with pytest.raises(InvalidArgument, match="Mount file path"):
            contained_path(name, "Mount file")


async def test_a_mount_refuses_climbing_paths_and_drops_set_id_bits(db, tmp_path):
    mounts = Mounts(db, BlobStore(str(tmp_path / "blobs")), str(tmp_path / "mounts"))
    data = b"print('hi')\n"
    digest = hashlib.sha256(data).hexdigest()
    mounts.put_file(digest, data)
    with pytest.raises(InvalidArgument, match="no '..'"):
        await mounts.create([api_pb2.MountFile(filename="/../../etc/cron.d/x", sha256_hex=digest)])
    with pytest.raises(InvalidArgument, match="not uploaded"):
        await mounts.create([api_pb2.MountFile(filename="/x", sha256_hex="../../../../etc/hostname")])
    mount_id = await mounts.create([api_pb2.MountFile(filename="/app/run.py", sha256_hex=digest, mode=0o104755)])
    placed = os.path.join(await mounts.materialise(mount_id), "app/run.py")
    assert open(placed, "rb").read() == data
    assert stat.S_IMODE(os.stat(placed).st_mode) == 0o755
