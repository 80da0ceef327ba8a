"""Unpacking OCI layer tarballs into overlayfs upper-directory format.

A layer tarball (gzip, zstd or plain) becomes a directory that can be stacked as an overlay
lowerdir: the OCI whiteout `.wh.<name>` becomes a 0/0 character device `<name>`, and
`.wh..wh..opq` marks its directory opaque (xattr trusted.overlay.opaque=y).

Nothing in a tarball can write outside the directory: names are cleaned and `..` that would
climb out is refused, and symlinks met on the way to an entry are resolved inside the layer
directory (as if it were chroot's root), never on the host. Runs as root: owners, modes,
device files and mtimes are kept. Synchronous: the puller runs it in a thread.
"""

import gzip
import io
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from typing import BinaryIO

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_COPY_BUFFER = 1 << 20
_MAX_SYMLINK_HOPS = 40


class LayerFormatError(Exception):
    """The tarball is not a usable layer (corrupt, unsafe, or in a compression we cannot read)."""


class _Prefixed(io.RawIOBase):
    """fileobj with the bytes already read from its start put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._rest, "readinto", None)
        if readinto is not None:
            return readinto(b) or 0
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)


def _read_head(fileobj: BinaryIO, n: int) -> bytes:
    head = b""
    while len(head) < n:
        data = fileobj.read(n - len(head))
        if not data:
            break
        head += data
    return head


def decompressed(fileobj: BinaryIO, media_type: str = "") -> BinaryIO:
    """The tar stream inside a layer blob; the compression is told by its magic bytes."""
    head = _read_head(fileobj, 4)
    raw = io.BufferedReader(_Prefixed(head, fileobj), buffer_size=_COPY_BUFFER)
    if media_type.endswith("+encrypted"):
        raise LayerFormatError(f"encrypted layers ({media_type}) are not supported")
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]  # reads multi-member gzip too
    if head.startswith(_ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            raise LayerFormatError(
                "layer is zstd-compressed and the Python package `zstandard` is not installed (pip install zstandard)"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    return raw  # type: ignore[return-value]  # an uncompressed tar


def extract_layer(fileobj: BinaryIO, dest: str, media_type: str = "") -> None:
    """Unpack the layer blob read from fileobj into the (empty) directory dest."""
    stream = decompressed(fileobj, media_type)
    try:
        # tarfile's stream buffer is re-sliced on every read: keep it small (its default).
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            unpacker = _Unpacker(dest)
            for member in tar:
                unpacker.add(tar, member)
            unpacker.finish()
        _drain(stream)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise LayerFormatError(f"corrupt layer tarball: {e}") from e
    except Exception as e:
        if type(e).__name__ == "ZstdError":
            raise LayerFormatError(f"corrupt zstd layer: {e}") from e
        raise


def _drain(stream: BinaryIO) -> None:
    """Read to the end of the compressed stream so that gzip checks its CRC and length."""
    try:
        while stream.read(_COPY_BUFFER):
            pass
    except gzip.BadGzipFile as e:
        if "Not a gzipped file" not in str(e):
            raise
        # Bytes after the last gzip member that are not gzip: tools that pad blobs exist, and
        # Docker ignores what follows the tar; the puller checks the blob digest anyway.


def _clean(name: str) -> list[str]:
    """A member name as path components below the layer root; refuses names that climb out."""
    path = posixpath.normpath(name.lstrip("/"))
    if path == ".":
        return []
    if path == ".." or path.startswith("../"):
        raise LayerFormatError(f"unsafe path in layer: {name!r} points outside the layer")
    return path.split("/")


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class _Unpacker:
    def __init__(self, dest: str):
        self.dest = os.path.abspath(dest)
        # Directory metadata is applied at the end: writing into a directory changes its mtime.
        self.dirs: dict[str, tarfile.TarInfo] = {}
        # Parent components -> real directory; cleared when a directory or symlink is removed.
        self.parents: dict[tuple[str, ...], str] = {}
        self.owner = (os.geteuid(), os.getegid())

    # -- paths -----------------------------------------------------------------------------

    def _walk(self, parts: list[str], create: bool) -> str:
        """The real directory for parts, following symlinks inside dest only (chroot-like)."""
        real: list[str] = []
        todo = list(parts)
        hops = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if real:
                    real.pop()
                continue
            path = os.path.join(self.dest, *real, part)
            st = _lstat(path)
            if st is None:
                if not create:
                    raise FileNotFoundError(path)
                os.mkdir(path, 0o755)
            elif stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise LayerFormatError(f"too many levels of symlinks under {'/'.join(parts)!r}")
                target = os.readlink(path)
                if target.startswith("/"):
                    real = []
                todo = target.split("/") + todo
                continue
            elif not stat.S_ISDIR(st.st_mode):
                if not create:
                    raise NotADirectoryError(path)
                # A later entry needs a directory where this layer had a file: the later entry wins.
                os.unlink(path)
                os.mkdir(path, 0o755)
                if _is_whiteout(st):
                    self._opaque(path)  # the new directory must not show the lower one's contents
            real.append(part)
        return os.path.join(self.dest, *real)

    def _parent(self, parts: list[str]) -> str:
        key = tuple(parts[:-1])
        found = self.parents.get(key)
        if found is None:
            found = self.parents[key] = self._walk(parts[:-1], create=True)
        return found

    def _remove(self, path: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
            self.dirs = {p: m for p, m in self.dirs.items() if p != path and not p.startswith(path + "/")}
            self.parents.clear()
        else:
            os.unlink(path)
            if stat.S_ISLNK(st.st_mode):
                self.parents.clear()

    @staticmethod
    def _opaque(path: str) -> None:
        os.setxattr(path, OPAQUE_XATTR, b"y", follow_symlinks=False)

    # -- entries ---------------------------------------------------------------------------

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = _clean(member.name)
        if not parts:  # "./": the layer root itself
            if member.isdir():
                self.dirs[self.dest] = member
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            parent = self._parent(parts)
            if base == OPAQUE_MARKER:
                self._opaque(parent)
            elif not base.startswith(WHITEOUT_PREFIX * 2):  # other .wh..wh.* are AUFS bookkeeping
                self._whiteout(parent, base[len(WHITEOUT_PREFIX) :])
            return
        parent = self._parent(parts)
        path = os.path.join(parent, base)
        if member.isdir():
            self._dir(path, member)
            return
        source = self._link_source(member) if member.islnk() else None
        try:
            self._create(tar, member, path, source)
        except FileExistsError:  # a later entry replaces an earlier one of this layer
            if source == path:
                return  # a hard link to itself
            st = _lstat(path)
            if st is not None:
                self._remove(path, st)
            self._create(tar, member, path, source)

    def _dir(self, path: str, member: tarfile.TarInfo) -> None:
        try:
            os.mkdir(path, 0o700)  # its mode is applied at the end
        except FileExistsError:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(path, st)
                os.mkdir(path, 0o700)
                if _is_whiteout(st):
                    self._opaque(path)  # deleted and re-created in this layer
        self.dirs[path] = member

    def _create(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str, source: str | None) -> None:
        if member.issym():
            os.symlink(member.linkname, path)
            if (member.uid, member.gid) != self.owner:
                os.lchown(path, member.uid, member.gid)
            self._mtime(path, member)
        elif source is not None:
            try:
                os.link(source, path, follow_symlinks=False)
            except FileExistsError:
                raise
            except OSError as e:
                raise LayerFormatError(f"hard link {member.name!r} -> {member.linkname!r}: {e.strerror}") from e
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            self._meta(path, member)
        elif member.isfifo():
            os.mkfifo(path, 0o600)
            self._meta(path, member)
        else:  # regular files, and unknown types read as regular files (as tar does)
            self._file(tar, member, path)

    def _link_source(self, member: tarfile.TarInfo) -> str:
        parts = _clean(member.linkname)
        if not parts:
            raise LayerFormatError(f"hard link {member.name!r} points at the layer root")
        try:
            source = os.path.join(self._walk(parts[:-1], create=False), parts[-1])
        except (FileNotFoundError, NotADirectoryError):
            source = ""
        st = _lstat(source) if source else None
        if st is None or _is_whiteout(st):
            raise LayerFormatError(f"hard link {member.name!r} -> {member.linkname!r}: the target is not in this layer")
        return source

    def _whiteout(self, parent: str, name: str) -> None:
        if name in ("", ".", ".."):
            return
        path = os.path.join(parent, name)
        st = _lstat(path)
        if st is None:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        elif stat.S_ISDIR(st.st_mode):
            # The whiteout hides only the lower layers' entry; this layer's directory stays.
            self._opaque(path)
        # Any other entry of this layer already hides the lower one completely.

    def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb", buffering=0) as out:
            source = tar.extractfile(member)
            if source is not None:  # reads sized to the file: no 1 MB buffer per small file
                shutil.copyfileobj(source, out, min(max(member.size, 1), _COPY_BUFFER))
            if (member.uid, member.gid) != self.owner:  # new files are already the creator's
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid bits
            try:
                os.utime(fd, (member.mtime, member.mtime))
            except (OverflowError, OSError, ValueError):
                pass

    def _meta(self, path: str, member: tarfile.TarInfo) -> None:
        """Owner, mode and mtime of something that is not a symlink."""
        os.lchown(path, member.uid, member.gid)
        try:
            os.chmod(path, member.mode & 0o7777, follow_symlinks=False)  # after chown (setuid bits)
        except NotImplementedError:  # an old libc; path is known not to be a symlink
            os.chmod(path, member.mode & 0o7777)
        self._mtime(path, member)

    @staticmethod
    def _mtime(path: str, member: tarfile.TarInfo) -> None:
        try:
            os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        except (OverflowError, OSError, ValueError):
            pass

    def finish(self) -> None:
        for path in sorted(self.dirs, reverse=True):  # children before their parents
            self._meta(path, self.dirs[path])
