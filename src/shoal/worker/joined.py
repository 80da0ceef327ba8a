"""`shoal worker`: a machine that joins a control plane and runs the containers it is given.

It runs them with the same LocalWorker the embedded platform uses; what differs is
where plans come from (the Connect stream), where the image and code directories
come from (fetched once from the control plane: image layers file by file into a
layer store of its own, the rest whole by their path there, which names their
content), and how containers reach the API (through task_proxy).
"""

import asyncio
import base64
import json
import logging
import os
import shutil
import tempfile
from urllib.parse import urlsplit

from google.protobuf.wrappers_pb2 import BytesValue, StringValue
from grpclib import GRPCError, Status
from grpclib.client import Channel
from grpclib.const import Cardinality
from modal_version import __version__ as CLIENT_VERSION

from ..images.manifest import Manifest
from ..images.store import LayerStore
from ..runtime import Runtime
from .agent import ContainerPlan, LocalWorker, default_ca_bundle
from .inventory import this_machine
from .protocol import (
    CONNECT,
    DIR,
    FETCH_DIR,
    FETCH_FILES,
    FETCH_MANIFEST,
    HEARTBEAT_INTERVAL,
    LAYER,
    TAR_OPTIONS,
    pack,
    plan_from_json,
    unpack,
)
from .task_proxy import RAW, serve_task

log = logging.getLogger(__name__)

# Failures a retry cannot mend: the worker stops and says why.
FATAL = (Status.UNAUTHENTICATED, Status.FAILED_PRECONDITION, Status.INVALID_ARGUMENT)
MAX_RECONNECT_DELAY = 10.0


def server_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(
            f"--server must look like http://HOST:PORT (the control plane's MODAL_SERVER_URL), not {url!r}"
        )
    return parts.hostname, parts.port


class Fetched:
    """What containers stack, fetched from the control plane once: image layers file by file
    into a layer store of this worker's own, other directories whole."""

    def __init__(self, root: str, channel: Channel, metadata: list[tuple[str, str]]):
        self.layers = LayerStore(os.path.join(root, "images"))
        self.dirs = os.path.join(root, "dirs")
        self.channel = channel
        self.metadata = metadata
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, name: str) -> str:
        """The local directory for a lower dir the control plane names "layer:<id>" or "dir:<path>"."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            if name.startswith(LAYER):
                return await self._layer(name.removeprefix(LAYER))
            return await self._dir(name.removeprefix(DIR))

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

    async def _dir(self, relative: str) -> str:
        if os.path.isabs(relative) or ".." in relative.split(os.sep):
            raise ValueError(f"refusing directory {relative!r} from outside the control plane's home")
        dest = os.path.join(self.dirs, relative)
        if os.path.isdir(dest):
            return dest
        # Workers on one machine may share the cache: each unpacks aside, the first rename wins.
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
        tar = await asyncio.create_subprocess_exec(
            "tar", *TAR_OPTIONS, "-C", dest, "-xf", "-", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with self.channel.request(
                method, Cardinality.UNARY_STREAM, type(request), BytesValue, metadata=self.metadata
            ) as stream:
                await stream.send_message(request, end=True)
                async for chunk in stream:
                    tar.stdin.write(chunk.value)
                    await tar.stdin.drain()
            tar.stdin.close()
            if await tar.wait() != 0:
                raise RuntimeError(f"unpacking from the control plane: {(await tar.stderr.read()).decode()}")
        finally:
            if tar.returncode is None:
                tar.kill()
                await tar.wait()


class JoinedWorker:
    def __init__(
        self,
        server_url: str,
        token_id: str,
        token_secret: str,
        home: str,
        name: str,
        fake_gpus: str = "",
        cache: str = "",
    ):
        host, port = server_address(server_url)
        self.name = name
        self.inventory = this_machine(fake_gpus, machine=name)
        self.metadata = [
            ("x-modal-client-version", CLIENT_VERSION),
            ("x-modal-token-id", token_id),
            ("x-modal-token-secret", token_secret),
        ]
        self.channel = Channel(host, port)
        self.container_channel = Channel(host, port, codec=RAW)  # containers' own RPCs, passed on unparsed
        self.fetched = Fetched(cache or home, self.channel, self.metadata)
        self.runtime = Runtime(os.path.join(home, "runtime"))
        self.local = LocalWorker(self.runtime, home, self._serve_task, default_ca_bundle(), self.inventory.nvidia)
        self.secrets: dict[str, str] = {}  # task id -> the secret its requests carry
        self.starting: dict[str, asyncio.Task] = {}  # task id -> fetching its image, not yet a container

    async def run(self, stop: asyncio.Event) -> None:
        """Stay joined until `stop`, reconnecting after a lost connection; raises on a fatal refusal."""
        await self.runtime.cleanup_all()
        delay = 1.0
        try:
            while not stop.is_set():
                session = asyncio.create_task(self._session())
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                session.cancel()
                try:
                    await session
                    delay = 1.0
                except asyncio.CancelledError:
                    pass
                except GRPCError as e:
                    if e.status in FATAL:
                        raise
                    log.warning("the control plane refused this worker: %s", e.message)
                except Exception as e:  # unreachable, reset, a restart of the control plane: try again
                    log.warning("lost the control plane: %s", str(e) or type(e).__name__)
                # The control plane gave up this worker's containers when the stream ended; so do we.
                await self._stop_containers()
                if not stop.is_set():
                    await asyncio.wait([asyncio.create_task(stop.wait())], timeout=delay)
                    delay = min(delay * 2, MAX_RECONNECT_DELAY)
        finally:
            await self._stop_containers()
            self.channel.close()
            self.container_channel.close()

    async def _session(self) -> None:
        async with self.channel.request(
            CONNECT, Cardinality.STREAM_STREAM, BytesValue, BytesValue, metadata=self.metadata
        ) as stream:
            inv = self.inventory
            gpus = [{"index": g.index, "type": g.gpu_type, "uuid": g.uuid} for g in inv.gpus]
            hello = {"type": "hello", "name": self.name, "milli_cpu": inv.milli_cpu, "memory_mb": inv.memory_mb}
            await stream.send_message(pack({**hello, "gpus": gpus}))
            if unpack(await stream.recv_message()) is None:
                return
            log.info("joined the control plane as %s", self.name)
            outbox: asyncio.Queue[dict] = asyncio.Queue()
            sender = asyncio.create_task(self._send(stream, outbox))
            try:
                while (message := unpack(await stream.recv_message())) is not None:
                    if message["type"] == "start":
                        task_id = message["plan"]["task_id"]
                        self.starting[task_id] = asyncio.create_task(self._start(message, outbox))
                        self.starting[task_id].add_done_callback(lambda _, t=task_id: self.starting.pop(t, None))
                    elif message["type"] == "stop":
                        if starting := self.starting.get(message["task_id"]):
                            starting.cancel()
                        await self.local.stop(message["task_id"])
            finally:
                sender.cancel()

    async def _send(self, stream, outbox: asyncio.Queue[dict]) -> None:
        """Everything the worker says, in order, with a heartbeat whenever it has been quiet."""
        while True:
            try:
                message = await asyncio.wait_for(outbox.get(), HEARTBEAT_INTERVAL)
            except TimeoutError:
                message = {"type": "heartbeat"}
            await stream.send_message(pack(message))

    async def _start(self, message: dict, outbox: asyncio.Queue[dict]) -> None:
        plan: ContainerPlan = plan_from_json(message["plan"])
        task_id = plan.task_id

        def on_output(fd: int, data: bytes) -> None:
            outbox.put_nowait({"type": "output", "task_id": task_id, "fd": fd, "data": base64.b64encode(data).decode()})

        async def on_exit(code: int, oom: bool) -> None:
            self.secrets.pop(task_id, None)
            outbox.put_nowait({"type": "exit", "task_id": task_id, "code": code, "oom": oom})

        def failed(error: str) -> None:
            self.secrets.pop(task_id, None)
            outbox.put_nowait({"type": "failed", "task_id": task_id, "error": error})

        try:
            plan.lower_dirs = [await self.fetched.get(d) for d in plan.lower_dirs]
            self.secrets[task_id] = message["secret"]
            await self.local.start(plan, on_output, on_exit)
        except asyncio.CancelledError:
            failed("stopped before it started")
            raise
        except Exception as e:
            log.exception("cannot start %s", task_id)
            failed(f"worker {self.name} could not start the container: {e}")
            return
        # Before any exit it may have: its watcher first runs after this.
        outbox.put_nowait({"type": "started", "task_id": task_id})

    async def _serve_task(self, task_id: str, path: str):
        return await serve_task(self.container_channel, task_id, self.secrets[task_id], path)

    async def _stop_containers(self) -> None:
        starting = list(self.starting.values())
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        try:
            await self.local.close()
        except Exception:
            log.exception("stopping containers")
        self.secrets.clear()
