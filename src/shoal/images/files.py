"""The file store: every regular file of every layer, once, named by its content and inode metadata.

Layer directories hold hard links to these objects, and hard links share one inode, so
an object is keyed by everything a container can see of a file: the sha256 of its bytes,
its mode, owner, mtime (Python's .pyc files check their source's mtime) and extended
attributes (file capabilities). Two layers holding the same file store it once; the
same bytes with other metadata are another object. Objects are never written after
they are made. Blocking: callers run these functions in threads.
"""

import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass

_CHUNK = 1 << 20
# trusted.overlay.* are overlayfs' own bookkeeping in upper dirs; only "opaque" means
# something in a layer (and it is kept on directories, never on files).
_OVERLAY_XATTRS = "trusted.overlay."


def content_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def xattrs(path: str) -> dict[str, str]:
    """Extended attributes worth keeping (hex values), overlayfs' bookkeeping left out."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {
        name: os.getxattr(path, name, follow_symlinks=False).hex()
        for name in sorted(names)
        if not name.startswith(_OVERLAY_XATTRS)
    }


def object_key(sha256: str, st: os.stat_result, attrs: dict[str, str]) -> str:
    key = f"{sha256}.{stat.S_IMODE(st.st_mode):o}.{st.st_uid}.{st.st_gid}.{st.st_mtime_ns}"
    if attrs:
        key += "." + hashlib.sha256(repr(sorted(attrs.items())).encode()).hexdigest()[:16]
    return key


@dataclass
class StoredFiles:
    count: int
    bytes: int


class FileStore:
    def __init__(self, root: str):
        self.root = root
        for i in range(256):
            os.makedirs(os.path.join(root, f"{i:02x}"), exist_ok=True)

    def path(self, key: str) -> str:
        return os.path.join(self.root, key[:2], key)

    def adopt(self, path: str, key: str) -> bool:
        """Make the file at `path` the object `key`: it becomes the object, or a link to the existing one.

        Nothing is copied: a new object is the file itself (one more link to its inode),
        and a file whose object exists is replaced by a link to that object (True then:
        its directory was changed).
        """
        obj = self.path(key)
        try:
            os.link(path, obj)
            return False
        except FileExistsError:
            pass
        if os.path.samestat(os.lstat(obj), os.lstat(path)):
            return False
        tmp = f"{path}.shoal-{os.getpid()}"
        try:
            os.link(obj, tmp)
        except OSError as e:
            if e.errno == errno.EMLINK:  # the object has all the links the file system allows: keep this copy
                return False
            raise
        os.rename(tmp, path)
        return True

    def link_into(self, key: str, dest: str) -> None:
        """Put object `key` at `dest` (a new name)."""
        try:
            os.link(self.path(key), dest)
        except OSError as e:
            if e.errno != errno.EMLINK:
                raise
            # The object has all the links the file system allows: a copy with its metadata.
            _copy_inode(self.path(key), dest)

    def keys(self) -> list[str]:
        return [name for i in range(256) for name in os.listdir(os.path.join(self.root, f"{i:02x}"))]

    def usage(self) -> StoredFiles:
        count = size = 0
        for i in range(256):
            with os.scandir(os.path.join(self.root, f"{i:02x}")) as entries:
                for entry in entries:
                    count += 1
                    size += entry.stat(follow_symlinks=False).st_size
        return StoredFiles(count, size)

    def remove(self, keys: set[str]) -> int:
        """Unlink objects; the bytes they held (layer directories may still link them)."""
        freed = 0
        for key in keys:
            try:
                st = os.lstat(self.path(key))
                os.unlink(self.path(key))
            except FileNotFoundError:
                continue
            freed += st.st_size
        return freed


def _copy_inode(src: str, dest: str) -> None:
    shutil.copy2(src, dest)
    st = os.lstat(src)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    for name, value in xattrs(src).items():
        os.setxattr(dest, name, bytes.fromhex(value))
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
