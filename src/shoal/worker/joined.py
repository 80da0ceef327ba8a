"""`shoal worker`: a machine that joins a control plane and runs the containers it is given.

It runs them with the same LocalWorker the embedded platform uses; what differs is
where plans come from (the Connect stream), where the image and code directories
come from (fetched from the control plane into a cache of bounded size, see
fetched.py), and how containers reach the API (through task_proxy).
"""

import asyncio
import base64
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from google.protobuf.wrappers_pb2 import BytesValue
from grpclib import GRPCError, Status
from grpclib.client import Channel
from grpclib.const import Cardinality
from modal_version import __version__ as CLIENT_VERSION

from ..runtime import Command, ContainerError, Runtime
from .agent import ContainerPlan, LocalWorker, default_ca_bundle
from .excess import Excess
from .fetched import Fetched
from .inventory import this_machine
from .protocol import (
    CONNECT,
    HEARTBEAT_INTERVAL,
    PUT_CHANGES,
    exec_options_from_json,
    exit_message,
    heartbeat,
    pack,
    plan_from_json,
    send_tar,
    unpack,
)
from .task_proxy import RAW, Tunnel, serve_task
from .tls import ca_bundle, write_file
from .tls_forward import TlsForwarder

log = logging.getLogger(__name__)

# Failures a retry cannot mend: the worker stops and says why.
FATAL = (Status.UNAUTHENTICATED, Status.FAILED_PRECONDITION, Status.INVALID_ARGUMENT)
MAX_RECONNECT_DELAY = 10.0
COLLECT_INTERVAL = 60.0


def server_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(
            f"--server must look like http://HOST:PORT (the control plane's MODAL_SERVER_URL), not {url!r}"
        )
    return parts.hostname, parts.port


async def _addresses(host: str) -> list[str]:
    """The host's addresses, as networks of one address each."""
    found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({ipaddress.ip_network(info[4][0]).with_prefixlen for info in found})


def _tunnel_closed(task: asyncio.Task) -> None:
    """Containers' RPCs go on as RPCs of their own until the next session opens a tunnel."""
    if not task.cancelled() and task.exception():
        log.warning("the tunnel to the control plane closed: %s", task.exception())


class JoinedWorker:
    def __init__(
        self,
        server_url: str,
        token_id: str,
        token_secret: str,
        home: str,
        name: str,
        fake_gpus: str,
        cache: str,
        cache_limit: int,  # bytes
        volumes: str = "",  # the control plane's volume directories on a shared file system
    ):
        host, port = server_address(server_url)
        self.control_host = host  # the ports opened for the control plane take its connections alone
        self.name = name
        self.home = home
        self.inventory = this_machine(fake_gpus, machine=name)
        self.metadata = [
            ("x-modal-client-version", CLIENT_VERSION),
            ("x-modal-token-id", token_id),
            ("x-modal-token-secret", token_secret),
        ]
        self.channel = Channel(host, port)
        self.container_channel = Channel(host, port, codec=RAW)  # containers' streaming RPCs, passed on unparsed
        self.tunnel = Tunnel()  # and their unary ones
        self.fetched = Fetched(cache, self.channel, self.metadata, cache_limit)
        self._collect = asyncio.Event()  # set when the cache may have outgrown its limit or freed something
        self.runtime = Runtime(os.path.join(home, "runtime"))
        self.local = LocalWorker(
            self.runtime, home, self._serve_task, default_ca_bundle(), self.inventory.nvidia, volumes_root=volumes
        )
        self.secrets: dict[str, str] = {}  # task id -> the secret its requests carry
        self.execs: dict[str, Command] = {}  # exec id -> a command running in a container here
        self.exec_tasks: set[asyncio.Task] = set()
        self.starting: dict[str, asyncio.Task] = {}  # task id -> fetching its image, not yet a container
        self.tunnels: dict[str, Callable[[], Awaitable[None]]] = {}  # tunnel id -> what closes it

    async def run(self, stop: asyncio.Event) -> None:
        """Stay joined until `stop`, reconnecting after a lost connection; raises on a fatal refusal."""
        await self.local.clear_leftovers()
        self._collect.set()  # at once: what the cache holds, within a limit that may be new
        collector = asyncio.create_task(self._collector())
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
            collector.cancel()
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
            await stream.send_message(pack({**hello, "gpus": gpus, "volumes": bool(self.local.volumes_root)}))
            welcome = unpack(await stream.recv_message())
            if welcome is None:
                return
            self._trust(welcome.get("router_ca", ""))
            self._tunnel_tls(welcome.get("tunnel_cert", ""), welcome.get("tunnel_key", ""))
            log.info("joined the control plane as %s", self.name)
            outbox: asyncio.Queue[dict] = asyncio.Queue()
            sender = asyncio.create_task(self._send(stream, outbox))
            beat = asyncio.create_task(self._beat(outbox))
            tunnel = asyncio.create_task(self.tunnel.run(self.channel, self.metadata))
            tunnel.add_done_callback(_tunnel_closed)
            try:
                while (message := unpack(await stream.recv_message())) is not None:
                    if message["type"] == "start":
                        task_id = message["plan"]["task_id"]
                        self.starting[task_id] = asyncio.create_task(self._start(message, outbox))
                        self.starting[task_id].add_done_callback(lambda _, t=task_id: self.starting.pop(t, None))
                    elif message["type"] == "stop":
                        graceful = message.get("graceful", False)
                        if not graceful and (starting := self.starting.get(message["task_id"])):
                            starting.cancel()
                        await self.local.stop(message["task_id"], graceful)
                    elif message["type"] == "tunnel_close":
                        if close := self.tunnels.pop(message["tunnel_id"], None):
                            await close()
                    elif handle := {
                        "exec": self._exec,
                        "probe_tcp": self._probe_tcp,
                        "tunnel_open": self._open_tunnel,
                        "server_open": self._open_server,
                        "copy_changes": self._copy_changes,
                    }.get(message["type"]):
                        running = asyncio.create_task(handle(message, outbox))
                        self.exec_tasks.add(running)
                        running.add_done_callback(self.exec_tasks.discard)
                    elif command := self.execs.get(message.get("exec_id", "")):
                        await _to_command(command, message)
            finally:
                for close in self.tunnels.values():  # the control plane that asked for them is gone
                    await close()
                self.tunnels.clear()
                sender.cancel()
                beat.cancel()
                tunnel.cancel()
                await asyncio.wait([tunnel])  # closed, and its calls failed, before a next session opens one

    async def _send(self, stream, outbox: asyncio.Queue[dict]) -> None:
        """Everything the worker says, in order."""
        while True:
            await stream.send_message(pack(await outbox.get()))

    async def _beat(self, outbox: asyncio.Queue[dict]) -> None:
        """A heartbeat now and then, with the CPU load, what containers used above their
        reservations and the cache."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            outbox.put_nowait(heartbeat(self.local.sample(), self.fetched.held, self.fetched.limit))

    async def _start(self, message: dict, outbox: asyncio.Queue[dict]) -> None:
        plan: ContainerPlan = plan_from_json(message["plan"])
        task_id = plan.task_id

        def on_output(fd: int, data: bytes) -> None:
            outbox.put_nowait({"type": "output", "task_id": task_id, "fd": fd, "data": _b64(data)})

        async def on_exit(code: int, oom: bool, excess: Excess | None) -> None:
            self.secrets.pop(task_id, None)
            self._release(task_id)
            outbox.put_nowait(exit_message(task_id, code, oom, excess))

        def failed(error: str) -> None:
            self.secrets.pop(task_id, None)
            self._release(task_id)
            outbox.put_nowait({"type": "failed", "task_id": task_id, "error": error})

        try:
            plan.lower_dirs = await self.fetched.acquire(task_id, plan.lower_dirs)
            self._collect.set()
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

    async def _exec(self, message: dict, outbox: asyncio.Queue[dict]) -> None:
        """A command in one of this worker's containers: its output and exit go back as they come."""
        exec_id = message["exec_id"]
        options = exec_options_from_json(message["options"])
        try:
            command = await self.local.exec(message["task_id"], message["args"], options)
            if command is None:
                raise ContainerError(f"container {message['task_id']} is not running on worker {self.name}")
        except Exception as e:
            outbox.put_nowait({"type": "exec_failed", "exec_id": exec_id, "error": str(e)})
            return
        self.execs[exec_id] = command
        outbox.put_nowait({"type": "exec_started", "exec_id": exec_id})

        async def relay(fd: int) -> None:
            async for _, data in command.read(fd, 0):
                outbox.put_nowait({"type": "exec_output", "exec_id": exec_id, "fd": fd, "data": _b64(data)})

        try:
            await asyncio.gather(relay(1), relay(2))
            outbox.put_nowait({"type": "exec_exit", "exec_id": exec_id, "code": await command.wait()})
        finally:
            self.execs.pop(exec_id, None)

    def _release(self, task_id: str) -> None:
        self.fetched.release(task_id)
        self._collect.set()

    async def _collector(self) -> None:
        """Keep the cache under its limit: after fetches and exits, and every so often."""
        while True:
            try:
                await asyncio.wait_for(self._collect.wait(), COLLECT_INTERVAL)
            except TimeoutError:
                pass
            self._collect.clear()
            try:
                if await self.fetched.collect() is None:  # a fetch is under way: later
                    await asyncio.sleep(1)
                    self._collect.set()
            except Exception:
                log.exception("collecting the cache")

    async def _probe_tcp(self, message: dict, outbox: asyncio.Queue[dict]) -> None:
        is_open = await self.local.probe_tcp(message["task_id"], message["port"])
        outbox.put_nowait({"type": "reply", "request_id": message["request_id"], "open": is_open})

    async def _open_tunnel(self, message: dict, outbox: asyncio.Queue[dict]) -> None:
        """A TLS port here in front of a container's port (see tls_forward.py), until told to close it."""
        reply = {"type": "reply", "request_id": message["request_id"]}
        try:
            port, self.tunnels[message["request_id"]] = await self.local.open_tunnel(
                message["task_id"], message["port"], message["h2"], message["encrypted"]
            )
        except (ContainerError, OSError) as e:
            outbox.put_nowait({**reply, "error": f"worker {self.name} could not open a tunnel: {e}"})
            return
        outbox.put_nowait({**reply, "port": port})

    async def _open_server(self, message: dict, outbox: asyncio.Queue[dict]) -> None:
        """A port here in front of a server container's port, once it listens (see LocalWorker.expose)."""
        reply = {"type": "reply", "request_id": message["request_id"]}
        try:
            peers = await _addresses(self.control_host)
            port = await self.local.expose(message["task_id"], message["port"], message["wait"], peers)
        except (ContainerError, OSError) as e:
            outbox.put_nowait({**reply, "error": f"worker {self.name}: {e}"})
            return
        outbox.put_nowait({**reply, "port": port})

    async def _copy_changes(self, message: dict, outbox: asyncio.Queue[dict]) -> None:
        """What a container changed in its file system (a sandbox's snapshot), copied here while it
        is paused, then sent to the control plane as the upload it asked for."""
        reply = {"type": "reply", "request_id": message["request_id"]}
        copy = tempfile.mkdtemp(prefix="changes-", dir=self.home)
        try:
            await self.local.copy_changes(message["task_id"], copy)
            async with self.channel.request(
                PUT_CHANGES, Cardinality.STREAM_UNARY, BytesValue, BytesValue, metadata=self.metadata
            ) as stream:
                await stream.send_message(pack({"upload_id": message["upload_id"]}))
                if error := await send_tar(stream, ["-C", copy, "."]):
                    raise ContainerError(error)
                await stream.end()
                await stream.recv_message()
        except (ContainerError, GRPCError, OSError) as e:
            outbox.put_nowait({**reply, "error": f"worker {self.name} could not send the container's changes: {e}"})
            return
        finally:
            shutil.rmtree(copy, ignore_errors=True)
        outbox.put_nowait(reply)

    def _tunnel_tls(self, cert: str, key: str) -> None:
        """The certificate of shoal's CA this worker's encrypted tunnels show."""
        if not cert:
            return
        directory = os.path.join(self.home, "tls")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        cert_path, key_path = os.path.join(directory, "tunnels.pem"), os.path.join(directory, "tunnels.key")
        write_file(cert_path, cert.encode())
        write_file(key_path, key.encode(), private=True)
        self.local.forwarder = TlsForwarder(cert_path, key_path, "0.0.0.0")

    def _trust(self, router_ca: str) -> None:
        """Containers here trust the control plane's command router: a CA bundle of this machine's
        and the control plane's CA (unless they are given none, SHOAL_CA_BUNDLE="")."""
        host_bundle = default_ca_bundle()
        if not router_ca or not host_bundle:
            return
        path = os.path.join(self.home, "ca-bundle.pem")
        write_file(path, ca_bundle(host_bundle, router_ca.encode()))
        self.local.ca_bundle = path

    async def _serve_task(self, task_id: str, path: str):
        return await serve_task(self.container_channel, self.tunnel, task_id, self.secrets[task_id], path)

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


async def _to_command(command: Command, message: dict) -> None:
    """The control plane's word to a running command: stdin, or kill."""
    if message["type"] == "exec_stdin":
        try:
            await command.write_stdin(message["offset"], base64.b64decode(message["data"]), message["eof"])
        except ValueError as e:  # a gap in the stream: the client resumes from the offset it is told
            log.warning("stdin of a command: %s", e)
    elif message["type"] == "exec_kill":
        command.kill()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
