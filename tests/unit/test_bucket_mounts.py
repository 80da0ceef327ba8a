"""Bucket mounts on a worker's machine: s3fs against a real S3-compatible server (moto's), the
keys file private while mounted, everything gone once unmounted, a bad bucket refused in words."""

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from shoal.runtime import ContainerError
from shoal.worker.buckets import BucketMount, MountedBuckets, unmount_all


@pytest.fixture(scope="module")
def endpoint():
    if os.geteuid() != 0 or shutil.which("s3fs") is None:
        pytest.fail("bucket mounts need root and s3fs (apt-get install s3fs); run `make test` as root", pytrace=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="data")
            break
        except Exception:
            assert time.monotonic() < deadline and server.poll() is None, "moto's S3 server did not start"
            time.sleep(0.2)
    client.put_object(Bucket="data", Key="set/a.txt", Body=b"a\n")
    yield url
    server.terminate()
    server.wait(10)


async def test_a_bucket_is_mounted_and_left_without_a_trace(tmp_path, endpoint):
    directory = tmp_path / "ta-1"
    buckets = MountedBuckets(str(directory))
    keys = dict(endpoint=endpoint, path_style=True, access_key="k", secret_key="s")
    (point, _), (prefixed, _) = await buckets.mount(
        [BucketMount("data", "/data", **keys), BucketMount("data", "/set", key_prefix="set/", read_only=True, **keys)]
    )
    assert (Path(point) / "set" / "a.txt").read_text() == "a\n"
    assert os.listdir(prefixed) == ["a.txt"]
    assert stat.S_IMODE(os.stat(directory / "0.keys").st_mode) == 0o600
    await buckets.unmount()
    assert not os.path.ismount(point) and not directory.exists()


async def test_a_bucket_that_cannot_be_mounted_says_why_and_leaves_nothing(tmp_path, endpoint):
    directory = tmp_path / "ta-2"
    buckets = MountedBuckets(str(directory))
    good = BucketMount("data", "/data", endpoint=endpoint, path_style=True, access_key="k", secret_key="s")
    bad = BucketMount("no-such-bucket", "/other", endpoint=endpoint, path_style=True, access_key="k", secret_key="s")
    with pytest.raises(ContainerError, match="Could not mount bucket 'no-such-bucket': .*not"):
        await buckets.mount([good, bad])
    assert not directory.exists()  # the good one was unmounted again


async def test_buckets_left_mounted_are_unmounted_at_the_next_start(tmp_path, endpoint):
    root = tmp_path / "buckets"
    buckets = MountedBuckets(str(root / "ta-3"))
    keys = dict(endpoint=endpoint, path_style=True, access_key="k", secret_key="s")
    ((point, _),) = await buckets.mount([BucketMount("data", "/data", **keys)])
    unmount_all(str(root))  # as if its worker had been killed
    assert not os.path.ismount(point)
    await buckets.unmount()
