"""The control plane's end of the worker protocol (see worker/protocol.py)."""

import asyncio
import base64
import json
import logging
import os
import re
import signal
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from google.protobuf.wrappers_pb2 import BytesValue, StringValue
from grpclib import GRPCError, Status
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream

from ..control.errors import AlreadyExists
from ..control.ids import new_id
from ..control.placement import Gpu, Worker
from ..control.platform import Platform
from ..control.workers import ExitCallback
from ..runtime import Command, ContainerError
from ..worker.agent import ContainerPlan, ExecOptions
from ..worker.excess import Excess
from ..worker.protocol import (
    CONNECT,
    DIR,
    FETCH_DIR,
    FETCH_FILES,
    FETCH_MANIFEST,
    HEARTBEAT_TIMEOUT,
    LAYER,
    PUT_CHANGES,
    TUNNEL,
    excess_of,
    exec_options_to_json,
    load_of,
    pack,
    plan_to_json,
    receive_tar,
    send_tar,
    unpack,
)
from . import router_tls
from .rpc import LOOPBACK
from .tunnel import Check, serve_tunnel

log = logging.getLogger(__name__)

REPLY_WAIT = 10.0  # seconds a worker has to answer a request (a TCP probe waits 5 s for its connection)
COPY_WAIT = 600.0  # and to send a container's changes


class RemoteExec(Command):
    """A command run in a container on a joined worker: its output comes in the link's messages."""

    def __init__(self, link: "RemoteLink", exec_id: str):
        super().__init__()
        self.link, self.exec_id = link, exec_id
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()

    @property
    def returncode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)

    def kill(self) -> None:
        self.link.tell({"type": "exec_kill", "exec_id": self.exec_id})

    async def _write(self, data: bytes) -> None:
        await self.link.send(_stdin(self.exec_id, self.stdin_offset, data, eof=False))

    async def _close_stdin(self) -> None:
        await self.link.send(_stdin(self.exec_id, self.stdin_offset, b"", eof=True))

    async def ended(self, code: int) -> None:
        for fd in (1, 2):
            await self.end(fd)
        if not self.exited.done():
            self.exited.set_result(code)


def _stdin(exec_id: str, offset: int, data: bytes, eof: bool) -> dict:
    return {
        "type": "exec_stdin",
        "exec_id": exec_id,
        "offset": offset,
        "data": base64.b64encode(data).decode(),
        "eof": eof,
    }


class RemoteLink:
    """Starts and stops containers on one connected worker; its messages come back through `serve`."""

    def __init__(self, platform: Platform, worker_id: str, stream: Stream, address: str, uploads: dict[str, str]):
        self.platform = platform
        self.uploads = uploads  # upload id -> where the tar the worker sends for it goes (PutChanges)
        self.worker_id = worker_id
        self.stream = stream
        self.address = address  # the host its machine is reached at ("": shoal's own)
        self.send_lock = asyncio.Lock()
        self.running: dict[str, tuple[Callable[[int, bytes], None], ExitCallback]] = {}
        self.starting: dict[str, asyncio.Future] = {}  # task id -> resolved when its process runs
        self.execs: dict[str, RemoteExec] = {}  # exec id -> a command running there
        self.replies: dict[str, asyncio.Future[dict]] = {}  # request id -> the worker's reply, once sent
        self.closed = False
        self._telling: set[asyncio.Task] = set()

    async def start(self, plan: ContainerPlan, on_output: Callable[[int, bytes], None], on_exit: ExitCallback) -> None:
        """Returns once the worker says the container's process runs; raises when it could not start it."""
        if self.closed:
            raise ContainerError(f"worker {self.worker_id} is gone")
        data = plan_to_json(plan)
        data["lower_dirs"] = [self._name(d) for d in plan.lower_dirs]
        self.running[plan.task_id] = (on_output, on_exit)
        started = self.starting[plan.task_id] = asyncio.get_running_loop().create_future()
        secret = self.platform.workers.issue_secret(plan.task_id)
        try:
            await self.send({"type": "start", "plan": data, "secret": secret})
            await started
        finally:
            self.starting.pop(plan.task_id, None)

    def _name(self, path: str) -> str:
        """A lower dir as the worker fetches it: an image layer by id, anything else by its path."""
        layers = self.platform.layers
        if os.path.dirname(path) == os.path.dirname(layers.layer_dir("x")):
            return LAYER + os.path.basename(path)
        return DIR + os.path.relpath(path, self.platform.settings.home)

    async def stop(self, task_id: str, graceful: bool = False) -> None:
        if not self.closed:
            await self.send({"type": "stop", "task_id": task_id, "graceful": graceful})

    async def exec(self, task_id: str, args: list[str], options: ExecOptions) -> RemoteExec:
        """A command run in one of the worker's containers; raises ContainerError if it could not start it."""
        if self.closed:
            raise ContainerError(f"worker {self.worker_id} is gone")
        exec_id = new_id("ex")
        command = self.execs[exec_id] = RemoteExec(self, exec_id)
        message = {"type": "exec", "task_id": task_id, "exec_id": exec_id, "args": args}
        await self.send({**message, "options": exec_options_to_json(options)})
        try:
            await command.started
        except ContainerError:
            self.execs.pop(exec_id, None)
            raise
        return command

    async def probe_tcp(self, task_id: str, port: int) -> bool:
        """Whether something accepts connections on a container's `port` there (the worker tries)."""
        try:
            return bool((await self._ask({"type": "probe_tcp", "task_id": task_id, "port": port}))["open"])
        except ContainerError:
            return False

    async def open_tunnel(
        self, task_id: str, port: int, h2: bool = False, encrypted: bool = True
    ) -> tuple[int, Callable[[], Awaitable[None]]]:
        """A port the worker opens on its machine in front of a container's `port`, and what closes it."""
        message = {"type": "tunnel_open", "task_id": task_id, "port": port, "h2": h2, "encrypted": encrypted}
        reply = await self._ask(message)
        tunnel_id = reply["request_id"]

        async def close() -> None:
            if not self.closed:
                await self.send({"type": "tunnel_close", "tunnel_id": tunnel_id})

        return reply["port"], close

    async def server_address(self, task_id: str, port: int, wait: float) -> tuple[str, int]:
        """A port the worker opens on its machine in front of a server container's port, once something
        listens there (within `wait` seconds); it closes with the container."""
        message = {"type": "server_open", "task_id": task_id, "port": port, "wait": wait}
        return self.address, (await self._ask(message, wait + REPLY_WAIT))["port"]

    async def copy_changes(self, task_id: str, into: str) -> None:
        """What a container there changed in its file system, copied into `into` here: the worker
        copies them while the container is paused, then sends them (PutChanges)."""
        upload_id = new_id("up")
        self.uploads[upload_id] = into
        try:
            await self._ask({"type": "copy_changes", "task_id": task_id, "upload_id": upload_id}, COPY_WAIT)
        finally:
            self.uploads.pop(upload_id, None)

    async def _ask(self, message: dict, wait: float = REPLY_WAIT) -> dict:
        """Send a request and wait up to `wait` for the worker's reply to it; ContainerError if none
        comes or the worker says it failed."""
        if self.closed:
            raise ContainerError(f"worker {self.worker_id} is gone")
        request_id = new_id("rq")
        reply = self.replies[request_id] = asyncio.get_running_loop().create_future()
        try:
            await self.send({**message, "request_id": request_id})
            answer = await asyncio.wait_for(reply, wait)
        except TimeoutError:
            raise ContainerError(f"worker {self.worker_id} did not answer {message['type']}") from None
        finally:
            self.replies.pop(request_id, None)
        if answer.get("error"):
            raise ContainerError(answer["error"])
        return answer

    def tell(self, message: dict) -> None:
        """Send without waiting for the send (a kill from code that cannot wait)."""
        if not self.closed:
            telling = asyncio.create_task(self.send(message))
            self._telling.add(telling)
            telling.add_done_callback(self._telling.discard)

    async def send(self, message: dict) -> None:
        async with self.send_lock:
            await self.stream.send_message(pack(message))

    async def serve(self) -> None:
        """Handle the worker's messages until it goes away or stops sending heartbeats."""
        while True:
            try:
                message = unpack(await asyncio.wait_for(self.stream.recv_message(), HEARTBEAT_TIMEOUT))
            except TimeoutError:
                log.warning("worker %s sent no heartbeat for %.0f s", self.worker_id, HEARTBEAT_TIMEOUT)
                return
            if message is None:
                return
            kind, task_id = message["type"], message.get("task_id", "")
            if kind == "output" and task_id in self.running:
                self.running[task_id][0](message["fd"], base64.b64decode(message["data"]))
            elif kind == "started" and task_id in self.starting:
                self.starting[task_id].set_result(None)
            elif kind == "failed" and task_id in self.starting:
                self._not_started(task_id, message["error"])
            elif kind == "exit" and task_id in self.running:
                await self._exited(task_id, message["code"], message["oom"], excess_of(message))
            elif kind == "reply" and (reply := self.replies.get(message["request_id"])) and not reply.done():
                reply.set_result(message)
            elif kind.startswith("exec_") and (command := self.execs.get(message["exec_id"])):
                await self._to_command(command, kind, message)
            elif kind == "heartbeat":
                self.platform.workers.note_cache(self.worker_id, message["cache_bytes"], message["cache_limit"])
                if load := load_of(message):
                    await self.platform.note_load(self.worker_id, load)

    async def _to_command(self, command: RemoteExec, kind: str, message: dict) -> None:
        if kind == "exec_started" and not command.started.done():
            command.started.set_result(None)
        elif kind == "exec_failed" and not command.started.done():
            command.started.set_exception(ContainerError(message["error"]))
        elif kind == "exec_output":
            await command.add(message["fd"], base64.b64decode(message["data"]))
        elif kind == "exec_exit":
            self.execs.pop(command.exec_id, None)
            await command.ended(message["code"])

    def _not_started(self, task_id: str, error: str) -> None:
        self.running.pop(task_id, None)
        self.platform.workers.revoke_secret(task_id)
        self.starting[task_id].set_exception(ContainerError(error))

    async def _exited(self, task_id: str, code: int, oom: bool, excess: Excess | None) -> None:
        _, on_exit = self.running.pop(task_id)
        self.platform.workers.revoke_secret(task_id)
        await on_exit(code, oom, excess)

    async def lost(self) -> None:
        """The worker is gone: every container it ran has ended, as far as the platform knows."""
        self.closed = True
        for task_id in list(self.starting):
            self._not_started(task_id, f"worker {self.worker_id} was lost before the container started")
        for task_id in list(self.running):
            self.running[task_id][0](2, f"worker {self.worker_id} was lost\n".encode())
            await self._exited(task_id, -1, False, None)
        for reply in self.replies.values():
            if not reply.done():
                reply.set_exception(ContainerError(f"worker {self.worker_id} was lost"))
        for command in list(self.execs.values()):
            if not command.started.done():
                command.started.set_exception(ContainerError(f"worker {self.worker_id} was lost"))
            await command.ended(-signal.SIGKILL)
        self.execs.clear()


class WorkerService:
    def __init__(self, platform: Platform, modal_handlers: dict[str, Handler], check: Check):
        self.platform = platform
        self.modal_handlers = modal_handlers  # what tunnelled calls are answered by
        self.check = check  # and how each is authenticated, as an RPC of its own would be
        self.uploads: dict[str, str] = {}  # see RemoteLink.copy_changes

    def __mapping__(self) -> dict[str, Handler]:
        return {
            CONNECT: Handler(self.connect, Cardinality.STREAM_STREAM, BytesValue, BytesValue),
            FETCH_DIR: Handler(self.fetch_dir, Cardinality.UNARY_STREAM, StringValue, BytesValue),
            FETCH_MANIFEST: Handler(self.fetch_manifest, Cardinality.UNARY_UNARY, StringValue, BytesValue),
            FETCH_FILES: Handler(self.fetch_files, Cardinality.UNARY_STREAM, BytesValue, BytesValue),
            PUT_CHANGES: Handler(self.put_changes, Cardinality.STREAM_UNARY, BytesValue, BytesValue),
            TUNNEL: Handler(self.tunnel, Cardinality.STREAM_STREAM, BytesValue, BytesValue),
        }

    async def tunnel(self, stream: Stream) -> None:
        await serve_tunnel(stream, self.modal_handlers, self.check)

    async def connect(self, stream: Stream) -> None:
        hello = unpack(await stream.recv_message())
        if not hello or hello.get("type") != "hello":
            raise GRPCError(Status.INVALID_ARGUMENT, "a worker must start with its hello")
        gpus = tuple(Gpu(g["index"], g["type"], g["uuid"]) for g in hello["gpus"])
        worker = Worker(hello["name"], hello["milli_cpu"], hello["memory_mb"], gpus, volumes=bool(hello.get("volumes")))
        # Its machine is reached at the address it connected from ("": this one, shoal's own).
        peer = stream.peer.addr()
        address = peer[0] if peer and peer[0] not in LOOPBACK else ""
        link = RemoteLink(self.platform, worker.worker_id, stream, address, self.uploads)
        try:
            self.platform.workers.join(worker, link)
        except AlreadyExists as e:
            raise GRPCError(Status.ALREADY_EXISTS, str(e)) from None
        log.info("worker %s joined: %s", worker.worker_id, worker.shape())
        try:
            # With the CA its containers need to trust the command router, and a certificate of
            # that CA for its encrypted sandbox tunnels (see router_tls.py).
            machine = address or urlsplit(self.platform.settings.server_url).hostname or "127.0.0.1"
            cert, key = router_tls.for_worker(self.platform.settings.home, [machine, "127.0.0.1", "localhost"])
            welcome = {"router_ca": self.platform.settings.router_ca, "tunnel_cert": cert, "tunnel_key": key}
            await stream.send_message(pack({"type": "welcome", **welcome}))
            await link.serve()
        finally:
            log.info("worker %s left", worker.worker_id)
            # Shielded: a dropped connection cancels this handler, and the inputs must still be requeued.
            await asyncio.shield(self._leave(worker.worker_id, link))

    async def _leave(self, worker_id: str, link: RemoteLink) -> None:
        await self.platform.workers.leave(worker_id)
        await link.lost()

    async def fetch_dir(self, stream: Stream) -> None:
        """A tar stream of one directory under the home (the client package, a code mount)."""
        relative = (await stream.recv_message()).value
        home = os.path.abspath(self.platform.settings.home)
        path = os.path.normpath(os.path.join(home, relative))
        if os.path.isabs(relative) or not path.startswith(home + os.sep) or not os.path.isdir(path):
            raise GRPCError(Status.NOT_FOUND, f"no directory {relative!r} to fetch")
        await _send_tar(stream, ["-C", path, "."], b"", relative)

    async def fetch_manifest(self, stream: Stream) -> None:
        layer_id = (await stream.recv_message()).value
        layers = self.platform.layers
        if not _LAYER_ID.fullmatch(layer_id) or not layers.has(layer_id):
            raise GRPCError(Status.NOT_FOUND, f"no image layer {layer_id!r}")
        manifest = await asyncio.to_thread(layers.manifest, layer_id)
        await stream.send_message(BytesValue(value=manifest.dumps().encode()))

    async def fetch_files(self, stream: Stream) -> None:
        """File-store objects by key, as a tar stream of their paths under the file store."""
        keys = json.loads((await stream.recv_message()).value)
        files = self.platform.layers.files
        names = [os.path.relpath(files.path(k), files.root) for k in keys]
        if not await asyncio.to_thread(lambda: all("/" not in k and os.path.exists(files.path(k)) for k in keys)):
            raise GRPCError(Status.NOT_FOUND, "asked for files the image store does not hold")
        listing = "".join(n + "\n" for n in names).encode()
        await _send_tar(stream, ["-C", files.root, "--verbatim-files-from", "-T", "-"], listing, f"{len(keys)} files")

    async def put_changes(self, stream: Stream) -> None:
        """A container's changes a worker sends for an upload a link asked for, unpacked where it said."""
        header = unpack(await stream.recv_message()) or {}
        into = self.uploads.get(header.get("upload_id", ""))
        if into is None:
            raise GRPCError(Status.NOT_FOUND, "no upload of that id is awaited")
        if error := await receive_tar(stream, into):
            raise GRPCError(Status.INTERNAL, f"could not unpack the container's changes: {error}")
        await stream.send_message(BytesValue())


_LAYER_ID = re.compile(r"[0-9a-f]{64}")


async def _send_tar(stream: Stream, args: list[str], stdin: bytes, what: str) -> None:
    if error := await send_tar(stream, args, stdin):
        raise GRPCError(Status.INTERNAL, f"could not pack {what}: {error}")
