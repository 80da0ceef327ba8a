"""Files of a volume, as the client reads and writes them from outside a container.

A volume is a directory that containers mount read-write, so anything in it may
have been put there by a container: a symlink to the host's /etc, a directory
where a file was. Every operation here therefore walks the path one component at
a time from the volume's own directory, with O_NOFOLLOW, and never resolves a
symlink: what a container can write cannot make the server read or write outside
the volume. Paths are relative to the volume's root ("/" and "" name the root).
"""

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from modal_proto import api_pb2

from .errors import AlreadyExists, InvalidArgument, NotFound

FileType = api_pb2.FileEntry.FileType
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY_CHUNK = 64 * 1024 * 1024


def parts(path: str) -> list[str]:
    """A path inside a volume as its components, refusing '..' and NUL."""
    if "\0" in path:
        raise InvalidArgument("Volume paths may not contain NUL characters")
    components = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in components:
        raise InvalidArgument(f"Volume path {path!r} may not contain '..'")
    return components


@contextmanager
def _directory(root: str, components: list[str], create: bool = False, path: str = "") -> Iterator[int]:
    """A descriptor of the directory at `components` below root, made on the way when `create`;
    errors name `path`, the path asked for, when given."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for i, name in enumerate(components):
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise NotFound(f"No such file or directory: {path or '/'.join(components[: i + 1])}") from None
            except OSError:  # a file there, or a symlink (not followed)
                raise InvalidArgument(f"{'/'.join(components[: i + 1])} is not a directory") from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _lstat(dir_fd: int, name: str, path: str) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise NotFound(f"No such file or directory: {path}") from None


_TYPES = {
    stat.S_IFREG: FileType.FILE,
    stat.S_IFDIR: FileType.DIRECTORY,
    stat.S_IFLNK: FileType.SYMLINK,
    stat.S_IFIFO: FileType.FIFO,
    stat.S_IFSOCK: FileType.SOCKET,
}


def _entry(path: str, st: os.stat_result) -> api_pb2.FileEntry:
    kind = _TYPES.get(stat.S_IFMT(st.st_mode), FileType.UNSPECIFIED)
    return api_pb2.FileEntry(path=path, type=kind, mtime=int(st.st_mtime), size=st.st_size)


def listing(root: str, path: str, recursive: bool) -> list[api_pb2.FileEntry]:
    """A directory's entries (every one below it when recursive), or a file's own entry."""
    components = parts(path)
    if components:
        with _directory(root, components[:-1], path=path) as parent:
            st = _lstat(parent, components[-1], path)
        if not stat.S_ISDIR(st.st_mode):
            return [_entry("/".join(components), st)]
    entries: list[api_pb2.FileEntry] = []
    with _directory(root, components) as fd:
        _list_into(fd, "/".join(components), recursive, entries)
    return entries


def _list_into(fd: int, prefix: str, recursive: bool, entries: list[api_pb2.FileEntry]) -> None:
    with os.scandir(fd) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        path = f"{prefix}/{child.name}" if prefix else child.name
        try:
            st = child.stat(follow_symlinks=False)
        except FileNotFoundError:  # removed meanwhile, by a container
            continue
        entries.append(_entry(path, st))
        if recursive and stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(child.name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                _list_into(sub, path, recursive, entries)
            finally:
                os.close(sub)


@contextmanager
def _open_file(root: str, path: str) -> Iterator[int]:
    components = parts(path)
    if not components:
        raise InvalidArgument("The volume's root is a directory, not a file")
    with _directory(root, components[:-1], path=path) as parent:
        try:
            fd = os.open(components[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
        except FileNotFoundError:
            raise NotFound(f"No such file or directory: {path}") from None
        except OSError:
            raise InvalidArgument(f"{path} is not a regular file") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgument(f"{path} is not a regular file")
        yield fd
    finally:
        os.close(fd)


def size(root: str, path: str) -> int:
    with _open_file(root, path) as fd:
        return os.fstat(fd).st_size


def read(root: str, path: str, start: int, length: int) -> bytes:
    with _open_file(root, path) as fd:
        return os.pread(fd, length, start)


def check_writable(root: str, path: str, overwrite: bool) -> None:
    """Refuse a file that may not be written at path: a directory there, or any file when not overwriting."""
    components = parts(path)
    if not components:
        raise InvalidArgument("A file cannot be written at the volume's root")
    try:
        with _directory(root, components[:-1]) as parent:
            st = os.stat(components[-1], dir_fd=parent, follow_symlinks=False)
    except (NotFound, FileNotFoundError):
        return
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{path} is a directory; a file cannot replace it")
    if not overwrite:
        raise AlreadyExists(f"{path} already exists in the volume")


def write(root: str, path: str, source: str, mode: int) -> None:
    """Place a copy of the host file `source` at path, making its directories; it replaces what was
    there (a symlink included, which is replaced, not followed) in one rename."""
    components = parts(path)
    with _directory(root, components[:-1], create=True) as parent, open(source, "rb") as src:
        _write_at(parent, components[-1], src.fileno(), (mode & 0o777) or 0o644)


def _write_at(dir_fd: int, name: str, src_fd: int, mode: int) -> None:
    tmp = f".shoal-tmp-{os.urandom(6).hex()}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        offset = 0
        while copied := os.sendfile(out, src_fd, offset, _COPY_CHUNK):  # in the kernel, no copy through here
            offset += copied
        os.fchmod(out, mode)  # not narrowed by the server's umask
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        os.unlink(tmp, dir_fd=dir_fd)
        raise
    finally:
        os.close(out)


def remove(root: str, path: str, recursive: bool) -> None:
    components = parts(path)
    if not components:
        raise InvalidArgument("The volume's root cannot be removed; delete the volume instead")
    with _directory(root, components[:-1], path=path) as parent:
        name = components[-1]
        st = _lstat(parent, name, path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent)
        elif recursive:
            shutil.rmtree(name, dir_fd=parent)  # fd-based: it does not follow symlinks either
        else:
            raise InvalidArgument(f"{path} is a directory; remove it recursively (modal volume rm -r)")


def copy(root: str, sources: list[str], destination: str) -> None:
    """Copy files as `cp` does: into the destination when it is a directory or there are several
    sources, else to the destination's path."""
    if not sources:
        raise InvalidArgument("No source paths to copy")
    dest = parts(destination)
    into = len(sources) > 1 or destination.endswith("/") or not dest or _is_directory(root, dest)
    for source in sources:
        src = parts(source)
        target = [*dest, src[-1]] if into and src else dest
        if not target:
            raise InvalidArgument("A file cannot be written at the volume's root")
        with _open_file(root, source) as src_fd, _directory(root, target[:-1], create=True) as parent:
            if _exists_as_directory(parent, target[-1]):
                raise InvalidArgument(f"{'/'.join(target)} is a directory; a file cannot replace it")
            _write_at(parent, target[-1], src_fd, stat.S_IMODE(os.fstat(src_fd).st_mode))


def open_directory(root: str, path: str) -> int:
    """A descriptor of the directory at `path`, made when missing (a mount's sub_path); the caller
    closes it."""
    with _directory(root, parts(path), create=True, path=path) as fd:
        return os.dup(fd)


def _is_directory(root: str, components: list[str]) -> bool:
    try:
        with _directory(root, components):
            return True
    except (NotFound, InvalidArgument):
        return False


def _exists_as_directory(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False
