"""Bucket mounts on a worker's machine: s3fs against a real S3-compatible server (moto's), the
keys file private while mounted, everything gone once unmounted, a bad bucket refused in words."""

import os
import shutil
import stat
from pathlib import Path

import pytest
from s3_server import ACCESS_KEY, SECRET_KEY, s3_server

from shoal.runtime import ContainerError
from shoal.worker.buckets import BucketMount, MountedBuckets, unmount_all


@pytest.fixture(scope="module")
def endpoint():
    if os.geteuid() != 0 or shutil.which("s3fs") is None:
        pytest.fail("bucket mounts need root and s3fs (apt-get install s3fs); run `make test` as root", pytrace=False)
    with s3_server() as (url, client):
        client.put_object(Bucket="data", Key="set/a.txt", Body=b"a\n")
        yield url


def at(endpoint: str, bucket: str, mount_path: str, **options) -> BucketMount:
    return BucketMount(
        bucket, mount_path, endpoint=endpoint, path_style=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **options
    )


async def test_a_bucket_is_mounted_and_left_without_a_trace(tmp_path, endpoint):
    directory = tmp_path / "ta-1"
    buckets = MountedBuckets(str(directory))
    (point, _), (prefixed, _) = await buckets.mount(
        [at(endpoint, "data", "/data"), at(endpoint, "data", "/set", key_prefix="set/", read_only=True)]
    )
    assert (Path(point) / "set" / "a.txt").read_text() == "a\n"
    assert os.listdir(prefixed) == ["a.txt"]
    assert stat.S_IMODE(os.stat(directory / "0.keys").st_mode) == 0o600
    await buckets.unmount()
    assert not os.path.ismount(point) and not directory.exists()


async def test_a_bucket_that_cannot_be_mounted_says_why_and_leaves_nothing(tmp_path, endpoint):
    directory = tmp_path / "ta-2"
    buckets = MountedBuckets(str(directory))
    with pytest.raises(ContainerError, match="Could not mount bucket 'no-such-bucket': .*not"):
        await buckets.mount([at(endpoint, "data", "/data"), at(endpoint, "no-such-bucket", "/other")])
    assert not directory.exists()  # the good one was unmounted again


async def test_buckets_left_mounted_are_unmounted_at_the_next_start(tmp_path, endpoint):
    root = tmp_path / "buckets"
    buckets = MountedBuckets(str(root / "ta-3"))
    ((point, _),) = await buckets.mount([at(endpoint, "data", "/data")])
    unmount_all(str(root))  # as if its worker had been killed
    assert not os.path.ismount(point)
    await buckets.unmount()
