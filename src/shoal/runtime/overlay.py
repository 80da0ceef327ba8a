"""Overlay rootfs mounts, made with mount(2) directly (no mount(8) subprocess on the start path)."""

import ctypes
import errno
import os
import re

from .spec import ContainerError

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2
# Mount data must fit in one page (with its NUL terminator).
_MAX_DATA = os.sysconf("SC_PAGE_SIZE") - 1
# Upper dirs become image layers stacked under later containers, so they must
# stand alone: no inode index, no redirect or metacopy xattrs pointing into lower layers.
_LAYER_SAFE = "index=off,redirect_dir=off,metacopy=off"


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _data(lowers: list[str], upper: str, work: str) -> str:
    lowerdir = ":".join(_escape(p) for p in lowers)
    return f"lowerdir={lowerdir},upperdir={_escape(upper)},workdir={_escape(work)},{_LAYER_SAFE}"


def mount(lower_dirs: list[str], upper: str, work: str, target: str) -> None:
    """Mount lower_dirs (bottom first) + upper at target."""
    dirs = [*reversed(lower_dirs), upper, work]  # overlay lists the top layer first
    fds: list[int] = []
    try:
        data = _data(dirs[:-2], dirs[-2], dirs[-1])
        if len(data.encode()) > _MAX_DATA:
            # Too long for one page: name each directory by a short /proc/self/fd path instead.
            fds = [os.open(d, os.O_PATH | os.O_DIRECTORY) for d in dirs]
            short = [f"/proc/self/fd/{fd}" for fd in fds]
            data = _data(short[:-2], short[-2], short[-1])
        if _libc.mount(b"overlay", target.encode(), b"overlay", 0, data.encode()) != 0:
            err = ctypes.get_errno()
            raise ContainerError(f"overlay mount at {target} failed: {os.strerror(err)} ({len(lower_dirs)} lower dirs)")
    finally:
        for fd in fds:
            os.close(fd)


def unmount(target: str) -> None:
    """Unmount target if it is a mount point; lazily if it is still busy."""
    if _libc.umount2(target.encode(), 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and _libc.umount2(target.encode(), _MNT_DETACH) == 0:
        return
    if err not in (errno.EINVAL, errno.ENOENT):  # not mounted / already gone
        raise OSError(err, f"unmounting {target}: {os.strerror(err)}")


def mounts_under(prefix: str) -> list[str]:
    """Mount points below prefix (not prefix itself), deepest first."""
    prefix = prefix.rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(prefix):
                found.append(point)
    return sorted(found, key=len, reverse=True)
