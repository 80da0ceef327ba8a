"""Volume mounts with sub_path=: one directory of a volume bound into a container.

Containers write volumes, symlinks included, so the directory is reached (and made)
from the volume's root without following any, and bound from that descriptor onto
a mount point of the worker's own, which runc then binds into the container. runc
follows the path it is given: a path through the volume would follow a symlink
that a running container swapped in for one of the directory's parents meanwhile,
and could mount the host's / instead. The worker's mount is detached as soon as
the container has its own (runc cannot bind from a descriptor: it mounts in the
container's mount namespace, and a bind across namespaces is refused).
"""

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterator

from ..control import volume_files
from ..control.errors import ShoalError
from ..runtime import ContainerError

_libc = ctypes.CDLL(None, use_errno=True)
_MS_BIND = 4096
_MNT_DETACH = 2


@contextlib.contextmanager
def sub_path_mount(volume_dir: str, sub_path: str, points: str) -> Iterator[str]:
    """The directory `sub_path` of the volume at `volume_dir`, made when missing, mounted at a
    new mount point under `points` while the context lasts."""
    try:
        fd = volume_files.open_directory(volume_dir, sub_path)
    except (ShoalError, OSError) as e:
        raise ContainerError(f"Cannot mount the volume's sub_path {sub_path!r}: {e}") from None
    try:
        os.makedirs(points, exist_ok=True)
        point = tempfile.mkdtemp(dir=points)
        if _libc.mount(f"/proc/self/fd/{fd}".encode(), point.encode(), None, _MS_BIND, None) != 0:
            error = os.strerror(ctypes.get_errno())
            os.rmdir(point)
            raise ContainerError(f"Cannot mount the volume's sub_path {sub_path!r}: {error}")
    finally:
        os.close(fd)
    try:
        yield point
    finally:
        _unmount(point)


def _unmount(point: str) -> None:
    """Detach the mount and remove its point (only ever empty: never walk into a volume)."""
    _libc.umount2(point.encode(), _MNT_DETACH)
    with contextlib.suppress(OSError):
        os.rmdir(point)


def unmount_all(points: str) -> None:
    """Mounts a worker that did not stop cleanly left while it started a container, and their points."""
    for name in os.listdir(points) if os.path.isdir(points) else ():
        _unmount(os.path.join(points, name))
    with contextlib.suppress(OSError):
        os.rmdir(points)
