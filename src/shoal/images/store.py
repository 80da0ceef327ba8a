"""Image layers on disk: a manifest per layer, file contents in the file store, and a directory per layer.

    images/files/ab/<sha256>.<mode>.<uid>.<gid>.<mtime>   every regular file, once (see files.py)
    images/manifests/<layer id>.json                      what the layer holds (see manifest.py)
    images/layers/<layer id>/                             the layer as an overlayfs lower dir: hard links
                                                          into files/, plus its own dirs, symlinks, whiteouts

A layer exists when its manifest does. A build step writes into a fresh directory; on
commit its files are adopted by the file store (linked, never copied), the directory is
renamed into place and the manifest written. A missing directory is made again from the
manifest. Garbage collection removes layers nobody keeps and objects no kept layer names;
leases keep what running builds and containers use.
"""

import asyncio
import contextvars
import errno
import os
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from .files import FileStore
from .manifest import Manifest, adopt, materialise, scan


@dataclass
class LayerSize:
    files: int
    bytes: int


@dataclass
class Collected:
    layers: int  # layers removed
    files: int  # file-store objects removed
    bytes: int  # their bytes


class Lease:
    """Layers that one build or container uses: garbage collection leaves them alone."""

    def __init__(self, store: "LayerStore"):
        self.store = store
        self.layers: set[str] = set()


# The lease of the build running in this task (and the tasks it starts).
_build_lease: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("shoal_build_lease", default=None)


class LayerStore:
    def __init__(self, root: str):
        self.root = root
        self._layers = os.path.join(root, "layers")
        self._manifests = os.path.join(root, "manifests")
        # Work areas live beside the layers so a finished layer is renamed into place, never copied.
        self.work_dir = os.path.join(root, "tmp")
        self._trash = os.path.join(root, "trash")
        for path in (self._layers, self._manifests, self.work_dir, self._trash):
            os.makedirs(path, exist_ok=True)
        self.files = FileStore(os.path.join(root, "files"))
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Held while layers are committed, leased or collected: the short steps that must not interleave.
        self._mutex = asyncio.Lock()
        self._held: Counter[str] = Counter()
        self._sizes: dict[str, LayerSize] = {}
        self._remove_abandoned()

    def layer_dir(self, layer_id: str) -> str:
        return os.path.join(self._layers, layer_id)

    def _manifest_path(self, layer_id: str) -> str:
        return os.path.join(self._manifests, layer_id + ".json")

    def has(self, layer_id: str) -> bool:
        return os.path.exists(self._manifest_path(layer_id))

    def manifest(self, layer_id: str) -> Manifest:
        with open(self._manifest_path(layer_id)) as f:
            return Manifest.loads(f.read())

    def size(self, layer_id: str) -> LayerSize:
        """Files and bytes of a layer (blocking the first time: it reads the manifest)."""
        if layer_id not in self._sizes:
            files = self.manifest(layer_id).files
            self._sizes[layer_id] = LayerSize(len(files), sum(e.size for e in files))
        return self._sizes[layer_id]

    def layer_ids(self) -> list[str]:
        return sorted(name.removesuffix(".json") for name in os.listdir(self._manifests) if name.endswith(".json"))

    # -- building ------------------------------------------------------------------------

    @asynccontextmanager
    async def building(self, layer_id: str, *, rebuild: bool = False) -> AsyncIterator[str | None]:
        """A fresh directory to build the layer in, or None when the layer exists and rebuild is False.

        On normal exit the directory becomes the layer; on an exception it is removed, so a
        failed step caches nothing. Builders of the same id wait for each other, so the
        second one sees the first one's layer instead of building it again. The layer joins
        the lease of the build running (see `lease`).
        """
        async with self._lock(layer_id):
            async with self._mutex:
                exists = self.has(layer_id)
                self._take(_build_lease.get(), [layer_id])
            if exists and not rebuild:
                yield None
                return
            tmp = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.work_dir)
            os.chmod(tmp, 0o755)  # the layer's root becomes the image's "/" (mkdtemp makes it 0700)
            try:
                yield tmp
                manifest = await asyncio.to_thread(scan, tmp)  # hashing, the slow part, outside the mutex
            except BaseException:  # a failed build, or one cancelled while hashing, leaves nothing
                await asyncio.to_thread(shutil.rmtree, tmp, True)
                raise
            async with self._mutex:
                await asyncio.to_thread(self._commit, tmp, layer_id, manifest)

    def _lock(self, layer_id: str) -> asyncio.Lock:
        """One lock per layer id, for as long as someone holds it."""
        lock = self._locks.get(layer_id)
        if lock is None:
            lock = self._locks[layer_id] = asyncio.Lock()
        return lock

    def _commit(self, tmp: str, layer_id: str, manifest: Manifest) -> None:
        adopt(tmp, manifest, self.files)
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
        self.record(layer_id, manifest)

    def record(self, layer_id: str, manifest: Manifest) -> None:
        """The layer exists from here on; one received from elsewhere (its file-store objects all
        here) gets its directory when first used."""
        tmp = f"{self._manifest_path(layer_id)}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(manifest.dumps())
        os.replace(tmp, self._manifest_path(layer_id))
        self._sizes.pop(layer_id, None)

    # -- using ---------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        """A build's lease: layers the build makes or finds (`building`, `use`) are kept until it ends."""
        lease = Lease(self)
        token = _build_lease.set(lease)
        try:
            yield lease
        finally:
            _build_lease.reset(token)
            await self.release(lease)

    async def use(self, layer_ids: Iterable[str]) -> bool:
        """Add existing layers to the running build's lease; False when one of them is gone."""
        layer_ids = list(layer_ids)
        async with self._mutex:
            if not all(self.has(layer) for layer in layer_ids):
                return False
            self._take(_build_lease.get(), layer_ids)
            return True

    async def hold(self, layer_ids: Iterable[str]) -> Lease:
        """A lease on layers for as long as something (a container) uses them; give it back with `release`."""
        lease = Lease(self)
        async with self._mutex:
            self._take(lease, layer_ids)
        return lease

    async def release(self, lease: Lease) -> None:
        async with self._mutex:  # so a collection deciding what to keep sees the lease or what replaced it
            for layer_id in lease.layers:
                self._held[layer_id] -= 1
                if self._held[layer_id] <= 0:
                    del self._held[layer_id]
            lease.layers.clear()

    def _take(self, lease: Lease | None, layer_ids: Iterable[str]) -> None:
        if lease is None or lease.store is not self:
            return
        for layer_id in layer_ids:
            if layer_id not in lease.layers:
                lease.layers.add(layer_id)
                self._held[layer_id] += 1

    async def ensure(self, layer_ids: list[str]) -> list[str]:
        """The layers' directories, bottom first; any that is missing is made from its manifest."""
        dirs = [self.layer_dir(layer) for layer in layer_ids]
        for layer_id, path in zip(layer_ids, dirs, strict=True):
            if not os.path.isdir(path):
                async with self._lock(layer_id):
                    if not os.path.isdir(path):
                        await asyncio.to_thread(self._materialise, layer_id)
        return dirs

    def _materialise(self, layer_id: str) -> None:
        work = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.work_dir)
        try:
            materialise(self.manifest(layer_id), self.files, os.path.join(work, "layer"))
            try:
                os.rename(os.path.join(work, "layer"), self.layer_dir(layer_id))
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise  # otherwise another process (sharing the store) made it first
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- collecting ----------------------------------------------------------------------

    async def collect(self, live: Callable[[], Awaitable[set[str]]]) -> Collected:
        """Remove every layer that `live()` does not name and no lease holds, then every unnamed object.

        `live` runs while no layer can be committed, leased or released, so a build that
        finishes meanwhile is either in its answer or still holding its lease.
        """
        async with self._mutex:
            keep = await live() | set(self._held)
            collected, doomed = await asyncio.to_thread(self._sweep, keep)
        await asyncio.to_thread(shutil.rmtree, doomed, True)
        return collected

    def _sweep(self, keep: set[str]) -> tuple[Collected, str]:
        doomed = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self._trash)
        layers = set(self.layer_ids()) | set(os.listdir(self._layers))  # directories without a manifest too
        removed = 0
        for layer_id in sorted(layers - keep):
            if os.path.isdir(self.layer_dir(layer_id)):
                os.rename(self.layer_dir(layer_id), os.path.join(doomed, layer_id))
            if self.has(layer_id):
                os.unlink(self._manifest_path(layer_id))
            self._sizes.pop(layer_id, None)
            removed += 1
        named = {e.key for layer_id in self.layer_ids() for e in self.manifest(layer_id).files}
        unnamed = set(self.files.keys()) - named
        return Collected(removed, len(unnamed), self.files.remove(unnamed)), doomed

    def _remove_abandoned(self) -> None:
        """Work dirs of processes that are gone (a crash mid-build) and set-aside old layers."""
        for area in (self.work_dir, self._trash):
            for name in os.listdir(area):
                pid = name.split("-", 1)[0]
                if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                    shutil.rmtree(os.path.join(area, name), ignore_errors=True)
