"""Cloud bucket mounts (`modal.CloudBucketMount`): an S3-compatible bucket mounted with s3fs (FUSE)
on the worker's machine, then bound into the container at its path.

Each mount is an s3fs process of its own, run in the foreground so that a bucket that cannot be
mounted (a wrong name, endpoint or key) fails the container's start with s3fs's own words. Its
credentials are written to a file only its owner reads, beside its mount point, for as long as
it is mounted. Mount points live apart from every directory shoal removes whole, and are only
ever removed empty: a bucket still mounted is never walked into.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from ..runtime import ContainerError

log = logging.getLogger(__name__)

MOUNT_WAIT = 20.0  # seconds s3fs has to mount a bucket
S3FS = "s3fs"


@dataclass
class BucketMount:
    bucket: str
    mount_path: str  # in the container
    endpoint: str = ""  # the S3 API's URL; "" for AWS's
    key_prefix: str = ""  # only the keys under it, as the mount's root
    path_style: bool = False  # <endpoint>/<bucket>/<key> rather than <bucket>.<endpoint host>/<key>
    read_only: bool = False
    requester_pays: bool = False
    access_key: str = ""  # "" for a public bucket
    secret_key: str = ""
    region: str = ""


class MountedBuckets:
    """A container's mounted buckets, and what unmounts them."""

    def __init__(self, directory: str):
        self.directory = directory  # one mount point per bucket under it, and their key files
        self.processes: list[tuple[str, asyncio.subprocess.Process]] = []

    async def mount(self, buckets: list[BucketMount]) -> list[tuple[str, BucketMount]]:
        """Mount each bucket; returns where each is on this machine. Raises ContainerError, having
        unmounted those it mounted, when one cannot be."""
        if buckets and shutil.which(S3FS) is None:
            raise ContainerError("CloudBucketMount needs s3fs on the worker's machine (apt install s3fs)")
        mounted = []
        try:
            for n, bucket in enumerate(buckets):
                mounted.append((await self._mount(n, bucket), bucket))
        except BaseException:
            await self.unmount()
            raise
        return mounted

    async def _mount(self, n: int, bucket: BucketMount) -> str:
        point = os.path.join(self.directory, str(n))
        os.makedirs(point, exist_ok=True)
        options = ["allow_other", f"umask={'0222' if bucket.read_only else '0000'}"]
        if bucket.access_key:
            keys = os.path.join(self.directory, f"{n}.keys")
            fd = os.open(keys, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{bucket.access_key}:{bucket.secret_key}\n")
            options.append(f"passwd_file={keys}")
        else:
            options.append("public_bucket=1")
        if bucket.endpoint:
            options.append(f"url={bucket.endpoint}")
        if bucket.region:
            options.append(f"endpoint={bucket.region}")
        if bucket.path_style:
            options.append("use_path_request_style")
        if bucket.read_only:
            options.append("ro")
        if bucket.requester_pays:
            options.append("requester_pays")
        source = f"{bucket.bucket}:/{bucket.key_prefix.strip('/')}" if bucket.key_prefix.strip("/") else bucket.bucket
        log_path = os.path.join(self.directory, f"{n}.log")  # a file, not a pipe nobody reads while it runs
        with open(log_path, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                S3FS, source, point, "-f", "-o", ",".join(options),
                stdout=log_file, stderr=log_file,  # s3fs logs to stdout in the foreground
            )  # fmt: skip
        self.processes.append((point, process))
        deadline = time.monotonic() + MOUNT_WAIT
        while not os.path.ismount(point):
            if process.returncode is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as f:
                    error = f.read().strip() or "it did not mount in time"
                raise ContainerError(f"Could not mount bucket {bucket.bucket!r}: {error}")
            await asyncio.sleep(0.05)
        return point

    async def unmount(self) -> None:
        """Unmount them all; a mount point is removed only once nothing is mounted there."""
        for point, process in self.processes:
            if os.path.ismount(point):
                unmount = await asyncio.create_subprocess_exec(
                    "umount", point, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
                )
                _, err = await unmount.communicate()
                if unmount.returncode != 0:
                    log.warning("could not unmount the bucket at %s: %s", point, err.decode(errors="replace").strip())
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
        self.processes.clear()
        for name in os.listdir(self.directory) if os.path.isdir(self.directory) else ():
            path = os.path.join(self.directory, name)
            with contextlib.suppress(OSError):  # a point still mounted is not empty: it stays
                if os.path.isdir(path):
                    os.rmdir(path)
                else:
                    os.remove(path)
        with contextlib.suppress(OSError):
            os.rmdir(self.directory)


def unmount_all(root: str) -> None:
    """Buckets a worker that did not stop cleanly left mounted (at its next start, or `shoal down`)."""
    if not os.path.isdir(root):
        return
    for task in os.listdir(root):
        for name in os.listdir(os.path.join(root, task)):
            point = os.path.join(root, task, name)
            if os.path.ismount(point):
                subprocess.run(["umount", "-l", point], check=False)
