"""Image layers on disk: one overlayfs upper directory per layer id."""

import asyncio
import errno
import os
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class LayerStore:
    def __init__(self, root: str):
        self.root = root
        self._layers = os.path.join(root, "layers")
        # Work areas live beside the layers so a finished layer is renamed into place, never copied.
        self._tmp = os.path.join(root, "tmp")
        self._trash = os.path.join(root, "trash")
        for path in (self._layers, self._tmp, self._trash):
            os.makedirs(path, exist_ok=True)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._remove_abandoned()

    def layer_dir(self, layer_id: str) -> str:
        return os.path.join(self._layers, layer_id)

    def has(self, layer_id: str) -> bool:
        return os.path.isdir(self.layer_dir(layer_id))

    @asynccontextmanager
    async def building(self, layer_id: str, *, rebuild: bool = False) -> AsyncIterator[str | None]:
        """A fresh directory to build the layer in, or None when the layer exists and rebuild is False.

        On normal exit the directory becomes the layer; on an exception it is removed, so a
        failed step caches nothing. Builders of the same id wait for each other, so the
        second one sees the first one's layer instead of building it again.
        """
        lock = self._locks.get(layer_id)
        if lock is None:
            lock = self._locks[layer_id] = asyncio.Lock()
        async with lock:
            if self.has(layer_id) and not rebuild:
                yield None
                return
            tmp = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self._tmp)
            os.chmod(tmp, 0o755)  # the layer's root becomes the image's "/" (mkdtemp makes it 0700)
            try:
                yield tmp
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
            await asyncio.to_thread(self._commit, tmp, layer_id)

    def _commit(self, tmp: str, layer_id: str) -> None:
        final = self.layer_dir(layer_id)
        if os.path.isdir(final):
            # A rebuild: running containers may still have the old directory mounted, so it is
            # set aside and only deleted when the store is next opened.
            os.rename(final, tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self._trash) + "/layer")
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process built the same layer first

    def _remove_abandoned(self) -> None:
        """Work dirs of processes that are gone (a crash mid-build) and set-aside old layers."""
        for area in (self._tmp, self._trash):
            for name in os.listdir(area):
                pid = name.split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                    shutil.rmtree(os.path.join(area, name), ignore_errors=True)
