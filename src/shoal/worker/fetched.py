"""What a joined worker fetches from the control plane, in a cache kept under a size limit.

Image layers are fetched file by file into a layer store of the worker's own; other
directories (the client package, code mounts) whole, by their path in the control
plane's home, which names their content. Beyond the limit, the least recently used
layers and directories that no container uses are removed.

Workers on one machine may share the cache. Each writes down what its containers use
(in-use/<pid>.json) and fetches under a shared lock; a collection takes the lock
exclusively, so it never removes what another worker is fetching or running.

    <cache>/images/   the layer store (see images/store.py)
    <cache>/dirs/     directories by their path in the control plane's home
    <cache>/used/     a marker per layer and directory, touched at each use (for the LRU order)
    <cache>/in-use/   per worker process: task id -> what its container uses
"""

import asyncio
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from google.protobuf.wrappers_pb2 import BytesValue, StringValue
from grpclib.client import Channel
from grpclib.const import Cardinality

from ..images.manifest import Manifest
from ..images.store import LayerStore
from .protocol import DIR, FETCH_DIR, FETCH_FILES, FETCH_MANIFEST, LAYER, receive_tar

log = logging.getLogger(__name__)

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_limit(spec: str, root: str) -> int:
    """Bytes from "20G", "512M", "1000" or "40%" (of the file system `root` is on)."""
    text = spec.strip().upper()
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", text):
        if not 0 < float(m.group(1)) <= 100:
            raise ValueError(f"a cache limit in percent must be between 0 and 100, not {spec!r}")
        fs = os.statvfs(root)
        return int(fs.f_blocks * fs.f_frsize * float(m.group(1)) / 100)
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)I?B?", text):
        return int(float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"a cache limit looks like 20G, 512M or 40% (of its file system), not {spec!r}")


@dataclass
class Removed:
    layers: int
    dirs: int
    bytes: int  # what the cache held beyond its limit that the removal freed (files shared by kept layers stay)


class Fetched:
    def __init__(self, root: str, channel: Channel, metadata: list[tuple[str, str]], limit: int):
        root = os.path.abspath(root)  # overlay mounts and in-use records name these paths
        self.layers = LayerStore(os.path.join(root, "images"))
        self.dirs = os.path.join(root, "dirs")
        self._used = os.path.join(root, "used")
        self._records = os.path.join(root, "in-use")
        for path in (self.dirs, self._used, self._records):
            os.makedirs(path, exist_ok=True)
        self._lock_path = os.path.join(root, "fetch.lock")
        self.channel = channel
        self.metadata = metadata
        self.limit = limit
        self.held: int | None = None  # bytes the cache held after the last collection (None: none yet)
        self.in_use: dict[str, list[str]] = {}  # task id -> the names its container's lower dirs came from
        self._locks: dict[str, asyncio.Lock] = {}
        self._keys: dict[str, dict[str, int]] = {}  # layer id -> its file-store objects and their sizes
        self._dir_sizes: dict[str, int] = {}

    # -- fetching --------------------------------------------------------------------------

    async def acquire(self, task_id: str, names: list[str]) -> list[str]:
        """Local directories for the lower dirs the control plane names "layer:<id>" or "dir:<path>",
        fetched where missing and kept from collection until `release(task_id)`."""
        async with self._flock(fcntl.LOCK_SH):
            self.in_use[task_id] = names
            self._write_record()
            try:
                return [await self._get(name) for name in names]
            except BaseException:
                self.release(task_id)
                raise

    def release(self, task_id: str) -> None:
        if self.in_use.pop(task_id, None) is not None:
            self._write_record()

    async def _get(self, name: str) -> str:
        async with self._locks.setdefault(name, asyncio.Lock()):
            path = await (self._layer(name.removeprefix(LAYER)) if name.startswith(LAYER) else self._dir(name))
        Path(self._used, quote(name, safe="")).touch()
        return path

    async def _layer(self, layer_id: str) -> str:
        if not self.layers.has(layer_id):
            reply = await self._call(FETCH_MANIFEST, Cardinality.UNARY_UNARY, StringValue(value=layer_id))
            manifest = Manifest.loads(reply[0].value.decode())
            files = self.layers.files
            missing = await asyncio.to_thread(
                lambda: sorted({e.key for e in manifest.files if not os.path.exists(files.path(e.key))})
            )
            if missing:
                # Unpacked beside the store (a crash leaves it to the store's clean-up), then linked in.
                with tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-", dir=self.layers.work_dir) as tmp:
                    request = BytesValue(value=json.dumps(missing).encode())
                    await self._untar(FETCH_FILES, request, tmp)
                    await asyncio.to_thread(lambda: [files.adopt(os.path.join(tmp, k[:2], k), k) for k in missing])
            self.layers.record(layer_id, manifest)
            log.info("layer %s: fetched %d of %d files", layer_id[:12], len(missing), len(manifest.files))
        return (await self.layers.ensure([layer_id]))[0]

    async def _dir(self, name: str) -> str:
        relative = name.removeprefix(DIR)
        if os.path.isabs(relative) or ".." in relative.split(os.sep):
            raise ValueError(f"refusing directory {relative!r} from outside the control plane's home")
        dest = os.path.join(self.dirs, relative)
        if os.path.isdir(dest):
            return dest
        # Workers sharing the cache may fetch the same one at once: each unpacks aside, the first rename wins.
        partial = f"{dest}.part-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        try:
            await self._untar(FETCH_DIR, StringValue(value=relative), partial)
            os.rename(partial, dest)
        except OSError:
            if not os.path.isdir(dest):
                raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return dest

    async def _call(self, method: str, cardinality: Cardinality, request) -> list:
        async with self.channel.request(method, cardinality, type(request), BytesValue, metadata=self.metadata) as s:
            await s.send_message(request, end=True)
            return [reply async for reply in s]

    async def _untar(self, method: str, request, dest: str) -> None:
        """Stream the tar the control plane answers `request` with into `dest`."""
        async with self.channel.request(
            method, Cardinality.UNARY_STREAM, type(request), BytesValue, metadata=self.metadata
        ) as stream:
            await stream.send_message(request, end=True)
            error = await receive_tar(stream, dest)
        if error:
            raise RuntimeError(f"unpacking from the control plane: {error}")

    # -- what is in use ----------------------------------------------------------------------

    @asynccontextmanager
    async def _flock(self, how: int) -> AsyncIterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            await asyncio.to_thread(fcntl.flock, fd, how)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write_record(self) -> None:
        path = os.path.join(self._records, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.in_use, f)
        os.replace(path + ".tmp", path)

    def _recorded_in_use(self) -> set[str]:
        """What the containers of every worker process sharing this cache use; records of
        processes that are gone are removed (their containers went with them)."""
        names = {name for used in self.in_use.values() for name in used}
        for entry in os.listdir(self._records):
            pid = entry.removesuffix(".json")
            if not entry.endswith(".json") or not pid.isdigit() or int(pid) == os.getpid():
                continue
            path = os.path.join(self._records, entry)
            if not os.path.exists(f"/proc/{pid}"):
                os.unlink(path)
                continue
            with open(path) as f:
                names.update(name for used in json.load(f).values() for name in used)
        return names

    # -- collecting --------------------------------------------------------------------------

    async def collect(self) -> Removed | None:
        """Bring the cache under its limit; None when a fetch is under way (in any worker sharing it)."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            layers, dirs, total, freed, in_use = await asyncio.to_thread(self._choose)
            self.held = total - freed
            if in_use is None:
                return Removed(0, 0, 0)
            keep = set(self.layers.layer_ids()) - layers

            async def live() -> set[str]:
                return keep

            await self.layers.collect(live)
            for layer_id in layers:
                self._keys.pop(layer_id, None)
            await asyncio.to_thread(self._remove_dirs, dirs)
            for name in [LAYER + layer for layer in layers] + dirs:
                _unlink(os.path.join(self._used, quote(name, safe="")))
            log.info(
                "cache over its limit: removed %d layers and %d directories (%d bytes); %d in use",
                len(layers), len(dirs), freed, in_use,
            )  # fmt: skip
            return Removed(len(layers), len(dirs), freed)
        finally:
            os.close(fd)

    def _choose(self) -> tuple[set[str], list[str], int, int, int | None]:
        """The layers and directories to remove, least recently used first, until the rest fit;
        the bytes held, and those the removal frees; and how many layers and directories are in
        use (None: under the limit)."""
        in_use = self._recorded_in_use()
        layer_ids = self.layers.layer_ids()
        dir_names = [n for n in map(unquote, os.listdir(self._used)) if n.startswith(DIR)]
        holders: Counter[str] = Counter()
        sizes: dict[str, int] = {}
        for layer_id in layer_ids:
            for key, size in self._layer_keys(layer_id).items():
                holders[key] += 1
                sizes[key] = size
        total = sum(sizes.values()) + sum(self._dir_size(n) for n in dir_names)
        if total <= self.limit:
            return set(), [], total, 0, None
        candidates = [LAYER + layer for layer in layer_ids] + dir_names
        candidates = sorted((n for n in candidates if n not in in_use), key=self._last_used)
        layers: set[str] = set()
        dirs: list[str] = []
        freed = 0
        for name in candidates:
            if total - freed <= self.limit:
                break
            if name.startswith(LAYER):
                layers.add(name.removeprefix(LAYER))
                for key in self._layer_keys(name.removeprefix(LAYER)):
                    holders[key] -= 1
                    freed += sizes[key] if holders[key] == 0 else 0
            else:
                dirs.append(name)
                freed += self._dir_size(name)
        return layers, dirs, total, freed, len(in_use)

    def _layer_keys(self, layer_id: str) -> dict[str, int]:
        if layer_id not in self._keys:
            self._keys[layer_id] = {e.key: e.size for e in self.layers.manifest(layer_id).files}
        return self._keys[layer_id]

    def _dir_size(self, name: str) -> int:
        if name not in self._dir_sizes:
            path = os.path.join(self.dirs, name.removeprefix(DIR))
            self._dir_sizes[name] = sum(
                os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(path) for f in files
            )
        return self._dir_sizes[name]

    def _last_used(self, name: str) -> float:
        try:
            return os.stat(os.path.join(self._used, quote(name, safe=""))).st_mtime
        except FileNotFoundError:
            return 0.0  # fetched before use was recorded: the oldest

    def _remove_dirs(self, names: list[str]) -> None:
        # Renamed aside first, so that a directory is either whole or gone.
        doomed = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.layers.work_dir)
        for i, name in enumerate(names):
            path = os.path.join(self.dirs, name.removeprefix(DIR))
            if os.path.isdir(path):
                os.rename(path, os.path.join(doomed, str(i)))
            self._dir_sizes.pop(name, None)
        shutil.rmtree(doomed, ignore_errors=True)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
