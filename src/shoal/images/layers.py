"""A read-only view of stacked overlayfs layers, as a container would see them.

The builder needs to look inside an image without mounting it: to find where a
path really lives (symlinks such as /bin -> usr/bin included), which users
exist, which Python it has, and what a COPY --from source holds.
"""

import os
import posixpath
import stat
from collections.abc import Iterator

_MAX_SYMLINKS = 40


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(host_dir: str) -> bool:
    try:
        return os.getxattr(host_dir, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


class LayerView:
    def __init__(self, dirs: list[str]):
        self.top_first = list(reversed(dirs))  # given bottom first, like overlay lowerdirs

    def entry(self, path: str) -> list[str]:
        """Host paths that make up `path`, top first, without following symlinks in it.

        One path for a file or symlink; for a directory, every layer's copy that merges into it.
        Empty when nothing is there. Intermediate components must be real directories.
        """
        parts = [p for p in path.split("/") if p]
        roots = self.top_first  # layers in which the directory walked so far is visible
        for i in range(len(parts)):
            rel = os.path.join(*parts[: i + 1])
            found: list[str] = []
            for root in roots:
                try:
                    st = os.lstat(os.path.join(root, rel))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if is_whiteout(st):
                    break
                if not stat.S_ISDIR(st.st_mode):
                    if not found:  # the topmost entry is not a directory: it hides the rest
                        found = [root]
                        if i < len(parts) - 1:
                            return []  # never let a host-side lookup go through a symlink
                    break
                found.append(root)
                if is_opaque(os.path.join(root, rel)):
                    break
            if not found:
                return []
            roots = found
        rel = os.path.join(*parts) if parts else ""
        return [os.path.join(root, rel) if rel else root for root in roots]

    def resolve(self, path: str, follow_last: bool = True) -> tuple[str, list[str]]:
        """The path with symlinks resolved inside the image, and its entry (empty if missing)."""
        parts = [p for p in path.split("/") if p and p != "."]
        cur = "/"
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                cur = posixpath.dirname(cur)
                continue
            cand = posixpath.join(cur, name)
            hosts = self.entry(cand)
            if hosts and os.path.islink(hosts[0]) and (parts or follow_last):
                hops += 1
                if hops > _MAX_SYMLINKS:
                    return cand, []
                target = os.readlink(hosts[0])
                if target.startswith("/"):
                    cur = "/"
                parts = [p for p in target.split("/") if p and p != "."] + parts
                continue
            if not hosts and parts:
                return posixpath.join(cand, *parts), []
            cur = cand
        return cur, self.entry(cur)

    def is_dir(self, path: str) -> bool:
        hosts = self.resolve(path)[1]
        return bool(hosts) and os.path.isdir(hosts[0])

    def read_text(self, path: str) -> str | None:
        hosts = self.resolve(path)[1]
        if not hosts or not os.path.isfile(hosts[0]):
            return None
        with open(hosts[0], errors="replace") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        """Names in a directory (symlinks in `path` followed), whiteouts applied."""
        seen: dict[str, bool] = {}  # name -> visible; the topmost layer having a name decides
        for host in self.resolve(path)[1]:
            if not os.path.isdir(host) or os.path.islink(host):
                break
            for name in os.listdir(host):
                if name not in seen:
                    seen[name] = not is_whiteout(os.lstat(os.path.join(host, name)))
        return sorted(name for name, visible in seen.items() if visible)

    def walk(self, path: str) -> Iterator[tuple[str, str]]:
        """(relative path, host path) of everything under a directory, parents before children."""
        yield from self._walk(self.resolve(path)[0], "")

    def _walk(self, base: str, prefix: str) -> Iterator[tuple[str, str]]:
        for name in self.listdir(base):
            path = posixpath.join(base, name)
            host = self.entry(path)[0]
            yield posixpath.join(prefix, name), host
            if os.path.isdir(host) and not os.path.islink(host):
                yield from self._walk(path, posixpath.join(prefix, name))
