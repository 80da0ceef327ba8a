"""Layer manifests: what a layer holds, entry by entry, with file contents in the file store.

A layer directory is an overlayfs upper/lower dir. Its manifest lists every entry (parents
before children) with its type and metadata; regular files name their file-store object,
symlinks their target, device nodes their number (whiteouts are 0/0 character devices), and
directories their extended attributes (`trusted.overlay.opaque` among them). The manifest
is the layer; its directory can be made again from it and the file store. Blocking: callers
run these functions in threads.
"""

import json
import os
import stat
from dataclasses import asdict, dataclass, field

from .files import FileStore, content_sha256, object_key, xattrs

FORMAT = 1


@dataclass
class Entry:
    path: str  # relative to the layer root; "." is the root itself
    mode: int  # st_mode: the type and the permission bits
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0  # regular files
    key: str = ""  # regular files: the file-store object
    target: str = ""  # symlinks
    rdev: int = 0  # device nodes
    xattrs: dict[str, str] = field(default_factory=dict)  # directories and nodes (a file's are in its object)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v or k in ("path", "mode", "uid", "gid", "mtime_ns")}


@dataclass
class Manifest:
    entries: list[Entry]

    @property
    def files(self) -> list[Entry]:
        return [e for e in self.entries if stat.S_ISREG(e.mode)]

    @property
    def size(self) -> int:
        """Bytes of its regular files, as if each were stored on its own."""
        return sum(e.size for e in self.files)

    def dumps(self) -> str:
        return json.dumps({"format": FORMAT, "entries": [e.to_json() for e in self.entries]}, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown layer manifest format {data.get('format')!r}")
        return cls([Entry(**e) for e in data["entries"]])


def scan(root: str) -> Manifest:
    """The manifest of a layer directory, hashing its files (nothing is stored yet)."""
    entries: list[Entry] = []

    def visit(path: str, rel: str) -> None:
        st = os.lstat(path)
        entry = Entry(rel, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
        entries.append(entry)
        if stat.S_ISREG(st.st_mode):
            entry.size = st.st_size
            entry.key = object_key(content_sha256(path), st, xattrs(path))
        elif stat.S_ISLNK(st.st_mode):
            entry.target = os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            entry.xattrs = xattrs(path)
            opaque = _opaque(path)
            if opaque:
                entry.xattrs["trusted.overlay.opaque"] = opaque
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name), name if rel == "." else f"{rel}/{name}")
        else:  # character and block devices (whiteouts too), fifos, sockets
            entry.rdev = st.st_rdev
            entry.xattrs = xattrs(path)

    visit(root, ".")
    return Manifest(entries)


def adopt(root: str, manifest: Manifest, files: FileStore) -> None:
    """Move the layer's files into the file store: each becomes an object or a link to an existing one."""
    changed = {os.path.dirname(e.path) or "." for e in manifest.files if files.adopt(os.path.join(root, e.path), e.key)}
    for entry in manifest.entries:  # replacing a file touched its directory: give it back its mtime
        if entry.path in changed:
            os.utime(os.path.join(root, entry.path), ns=(entry.mtime_ns, entry.mtime_ns))


def materialise(manifest: Manifest, files: FileStore, dest: str) -> None:
    """Make the layer directory `dest` (which must not exist) from the manifest and the file store."""
    dirs: list[tuple[str, Entry]] = []
    for entry in manifest.entries:
        path = dest if entry.path == "." else os.path.join(dest, entry.path)
        mode = entry.mode
        if stat.S_ISDIR(mode):
            os.mkdir(path, 0o700)
            dirs.append((path, entry))  # metadata once its children are in (they change its mtime)
        elif stat.S_ISREG(mode):
            files.link_into(entry.key, path)  # the object carries the file's metadata
        elif stat.S_ISLNK(mode):
            os.symlink(entry.target, path)
            os.lchown(path, entry.uid, entry.gid)
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
        else:
            os.mknod(path, stat.S_IFMT(mode) | 0o600, entry.rdev)
            _set_meta(path, entry)
    for path, entry in reversed(dirs):
        _set_meta(path, entry)


def _set_meta(path: str, entry: Entry) -> None:
    os.chown(path, entry.uid, entry.gid, follow_symlinks=False)
    os.chmod(path, stat.S_IMODE(entry.mode))  # after chown, which clears setuid bits
    for name, value in entry.xattrs.items():
        os.setxattr(path, name, bytes.fromhex(value), follow_symlinks=False)
    os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)


def _opaque(path: str) -> str:
    try:
        value = os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False)
    except OSError:
        return ""
    return value.hex() if value == b"y" else ""
