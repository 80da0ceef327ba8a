"""The worker: turns container plans into running containers on this machine.

It knows images only as directories and apps not at all. Each container gets
a private directory bind-mounted at /__shoal holding its arguments file and the
unix socket its client runtime talks to; who owns the socket is who is calling.
"""

import asyncio
import hashlib
import ipaddress
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

from ..images.layers import LayerView
from ..images.snapshot import drop_runtime_files
from ..runtime import BindMount, Container, ContainerError, ContainerSpec, Exec, Runtime
from . import nvidia, sub_paths
from .buckets import BucketMount, MountedBuckets, unmount_all
from .cpu_load import CpuMeter
from .excess import Excess, ExcessMeter
from .tls_forward import TlsForwarder, accepts, forward

log = logging.getLogger(__name__)

TASK_MOUNT = "/__shoal"
# The host's CA bundle, so containers trust what the host trusts (a proxy's or a
# company's own CA); Python's, pip's, uv's and curl's TLS read these variables.
CA_MOUNT = "/etc/shoal/ca-certificates.crt"
CA_ENV = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
SOCKET_NAME = "modal.sock"
ARGS_NAME = "container_args.bin"
FS_TOOLS = "/__modal/.bin/modal-sandbox-fs-tools"  # where the client runs it
LOOPBACK = "127.0.0.1"  # where a container on this machine's own network is reached
PROBE_TIMEOUT = 5.0  # seconds a TCP readiness probe waits for its connection

# serve_socket(task_id, path) starts answering RPCs on a unix socket and
# returns the coroutine function that stops it.
SocketServer = Callable[[str, str], Awaitable[Callable[[], Awaitable[None]]]]


@dataclass(frozen=True)
class ExecOptions:
    """How a command runs in a container, over the container's own settings."""

    cwd: str = ""
    env: dict[str, str] = field(default_factory=dict)
    merge_stderr: bool = False  # its stderr into its stdout
    terminal: tuple[int, int] | None = None  # (rows, columns) of a terminal to run it on


@dataclass
class ContainerPlan:
    task_id: str
    lower_dirs: list[str]  # bottom first: image layers, client package, code mounts
    args: list[str]
    env: dict[str, str]
    cwd: str
    user: str | None
    container_args: bytes
    cpu: float | None = None
    memory_mb: int | None = None
    upper_dir: str | None = None  # kept after the container ends (a build step's layer); None: thrown away
    gpus: list[str] = field(default_factory=list)  # uuids of the GPUs it was given
    # What it is metered for at least (see excess.py); cpu and memory_mb above are limits.
    reserved_cores: float = 0.0
    reserved_memory_mb: int = 0
    network: bool = True  # False: block_network=True
    # A network of its own (a server's, whose containers all listen on one port; a sandbox's), with
    # the IPv4 networks its outbound connections may reach (None: any)
    own_network: bool = False
    allowed_networks: list[str] | None = None
    allowed_domains: list[str] | None = None  # and the server names its TLS connections may reach
    inbound_networks: list[str] | None = None  # where its tunnels take connections from; None: anywhere
    # (volume id, directory of it to mount ("": all), path in the container, read-only)
    volumes: list[tuple[str, str, str, bool]] = field(default_factory=list)
    # Its processes reach shoal's API on a socket of their own; a sandbox's get none (its code may be anyone's).
    serve_api: bool = True
    fs_tools: bool = False  # the file tool of `Sandbox.filesystem` is mounted where the client runs it
    # Its address on the private network of its app's containers (`i6pn=True`, clusters): its
    # machine's, in IPv6 form; "" when it is on none.
    i6pn_address: str = ""
    buckets: list[BucketMount] = field(default_factory=list)  # mounted from the worker's machine


@dataclass
class Load:
    cpu_busy: float  # the machine's busy fraction
    task_cores: dict[str, float]  # task id -> cores it used
    task_memory: dict[str, int]  # task id -> bytes it holds (file cache aside)
    task_excess: dict[str, Excess]  # task id -> what it used above its reservation so far
    task_gpu_utilization: dict[str, float] = field(default_factory=dict)  # task id -> % of its real GPUs


@dataclass
class ContainerEnd:
    code: int
    oom_killed: bool
    timed_out: bool


def default_ca_bundle() -> str:
    """SHOAL_CA_BUNDLE if set ("" for none), else the host's bundle where it has one."""
    return os.environ.get("SHOAL_CA_BUNDLE", HOST_CA_BUNDLE if os.path.exists(HOST_CA_BUNDLE) else "")


# Where the worker mounts things into every container (created in a build step's upper dir, not part of it).
MOUNT_POINTS = (TASK_MOUNT, CA_MOUNT)


async def _serving_nothing() -> None:
    pass


class LocalWorker:
    def __init__(
        self,
        runtime: Runtime,
        home: str,
        serve_socket: SocketServer,
        ca_bundle: str = "",
        nvidia_gpus: tuple[nvidia.NvidiaGpu, ...] = (),
        volumes_root: str = "",
    ):
        self.runtime = runtime
        # Where it sees the control plane's volumes, a directory each ("": it mounts none).
        self.volumes_root = volumes_root
        self.nvidia = {g.uuid: g for g in nvidia_gpus}
        self._driver_mounts: list[BindMount] | None = None
        self.ca_bundle = ca_bundle
        self.serve_socket = serve_socket
        # Unix socket paths are limited to 108 bytes: keep them short and off the home dir.
        home_tag = hashlib.sha256(home.encode()).hexdigest()[:10]
        self.run_dir = f"/run/shoal/{home_tag}"
        # apart from run_dir, which is removed whole: a bucket still mounted must never be walked into
        self.buckets_dir = f"/run/shoal-buckets/{home_tag}"
        self.sub_paths_dir = f"/run/shoal-volumes/{home_tag}"  # likewise: volume sub_paths (sub_paths.py)
        self.containers: dict[str, Container] = {}
        # (task id, its port) -> the port here in front of it (see expose), and what closes that
        self._exposed: dict[tuple[str, int], tuple[int, Callable[[], Awaitable[None]]]] = {}
        self._inbound: dict[str, list[str]] = {}  # task id -> where its tunnels take connections from
        self._watchers: set[asyncio.Task] = set()
        self._cpu = CpuMeter()
        self._excess = ExcessMeter()
        self._real_gpus: dict[str, list[str]] = {}  # task id -> uuids of the NVIDIA GPUs it was given
        self._utilization: nvidia.Utilization | None = None  # NVML, once a container has a real GPU
        # Encrypted sandbox tunnels: TLS with a certificate of shoal's CA, once it has one.
        self.forwarder: TlsForwarder | None = None
        self.address = ""  # the host clients reach this machine at ("": the control plane's own)

    async def start(
        self,
        plan: ContainerPlan,
        on_output: Callable[[int, bytes], None],
        on_exit: Callable[[int, bool, Excess | None], Awaitable[None]],
    ) -> None:
        """Start the container, returning once its process runs (raises if it cannot); on_exit follows
        its end, with what it used above its reservation."""
        container, cleanup = await self._launch(plan, on_output)
        self._excess.begin(plan.task_id, plan.reserved_cores, plan.reserved_memory_mb, time.monotonic())
        if real := [uuid for uuid in plan.gpus if uuid in self.nvidia]:
            self._real_gpus[plan.task_id] = real

        async def watch() -> None:
            code = await container.wait()
            self._real_gpus.pop(plan.task_id, None)
            try:
                # Its cgroup outlives it until the cleanup: its CPU time in all is still there.
                excess = self._excess.end(plan.task_id, self.runtime.cpu_seconds(plan.task_id), time.monotonic())
                await on_exit(code, container.oom_killed, excess)
            finally:
                await cleanup()

        watcher = asyncio.create_task(watch())
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def run(self, plan: ContainerPlan, on_output: Callable[[int, bytes], None], timeout: float) -> ContainerEnd:
        """Run a container to its end (a build step) and remove it, its upper dir kept; raises if it cannot start."""
        container, cleanup = await self._launch(plan, on_output)
        try:
            try:
                code = await asyncio.wait_for(container.wait(), timeout)
            except TimeoutError:
                await container.kill()
                return ContainerEnd(await container.wait(), container.oom_killed, timed_out=True)
            return ContainerEnd(code, container.oom_killed, timed_out=False)
        finally:
            await cleanup()

    async def _launch(
        self, plan: ContainerPlan, on_output: Callable[[int, bytes], None]
    ) -> tuple[Container, Callable[[], Awaitable[None]]]:
        """Start the container with its private directory and socket; returns it and what removes it all."""
        task_dir = os.path.join(self.run_dir, plan.task_id)
        os.makedirs(task_dir, exist_ok=True)
        env = dict(plan.env)
        stop_serving = _serving_nothing
        if plan.serve_api:
            with open(os.path.join(task_dir, ARGS_NAME), "wb") as f:
                f.write(plan.container_args)
            stop_serving = await self.serve_socket(plan.task_id, os.path.join(task_dir, SOCKET_NAME))
            env.update(
                MODAL_SERVER_URL=f"unix://{TASK_MOUNT}/{SOCKET_NAME}",
                MODAL_CONTAINER_ARGUMENTS_PATH=f"{TASK_MOUNT}/{ARGS_NAME}",
                MODAL_IS_REMOTE="1",
            )
        env["MODAL_TASK_ID"] = plan.task_id
        gpu_devices, gpu_mounts = self._gpus(plan.gpus, env)
        staged = ExitStack()  # the worker's own mounts of volume sub_paths, until runc has made the container's
        buckets = MountedBuckets(os.path.join(self.buckets_dir, plan.task_id))
        try:
            mounted = await buckets.mount(plan.buckets)
            volumes = self._volume_mounts(plan.volumes, staged)
        except BaseException:
            await stop_serving()
            await buckets.unmount()
            shutil.rmtree(task_dir, ignore_errors=True)
            raise
        spec = ContainerSpec(
            id=plan.task_id,
            lower_dirs=plan.lower_dirs,
            args=plan.args,
            env=env,
            cwd=plan.cwd,
            user=plan.user,
            bind_mounts=[
                BindMount(task_dir, TASK_MOUNT, readonly=False),
                *self._ca_mounts(env),
                *gpu_mounts,
                *volumes,
                *([BindMount(self._fs_tools(), FS_TOOLS)] if plan.fs_tools else []),
                *_private_network_hosts(task_dir, plan),
                *(BindMount(point, bucket.mount_path, readonly=bucket.read_only) for point, bucket in mounted),
            ],
            hostname=plan.task_id if plan.i6pn_address else None,
            cpu=plan.cpu,
            memory_mb=plan.memory_mb,
            upper_dir=plan.upper_dir,
            gpu_devices=gpu_devices,
            network=plan.network,
            own_network=plan.own_network,
            allowed_networks=plan.allowed_networks,
            allowed_domains=plan.allowed_domains,
        )
        try:
            with staged:
                container = await self.runtime.start(spec, on_output)
        except BaseException:  # a cancelled start too: its socket, buckets and directory go with it
            await stop_serving()
            await buckets.unmount()
            shutil.rmtree(task_dir, ignore_errors=True)
            raise
        self.containers[plan.task_id] = container
        if plan.inbound_networks is not None:
            self._inbound[plan.task_id] = plan.inbound_networks

        async def cleanup() -> None:
            self.containers.pop(plan.task_id, None)
            self._inbound.pop(plan.task_id, None)
            for key in [key for key in self._exposed if key[0] == plan.task_id]:
                await self._exposed.pop(key)[1]()
            try:
                await self.runtime.remove(container)
            finally:
                await stop_serving()
                await buckets.unmount()
                shutil.rmtree(task_dir, ignore_errors=True)

        return container, cleanup

    async def clear_leftovers(self) -> None:
        """The containers, and the buckets they mounted, that a worker which did not stop cleanly left."""
        await self.runtime.cleanup_all()
        await asyncio.to_thread(unmount_all, self.buckets_dir)
        await asyncio.to_thread(sub_paths.unmount_all, self.sub_paths_dir)

    def _fs_tools(self) -> str:
        """The sandbox file tool, executable, where containers can mount it (the installed copy may not be)."""
        path = os.path.join(self.run_dir, "modal-sandbox-fs-tools")
        if not os.path.exists(path):
            os.makedirs(self.run_dir, exist_ok=True)
            shutil.copyfile(os.path.join(os.path.dirname(__file__), "sandbox_fs_tools.py"), path + ".new")
            os.chmod(path + ".new", 0o755)
            os.replace(path + ".new", path)
        return path

    def _gpus(self, uuids: list[str], env: dict[str, str]) -> tuple[list[str], list[BindMount]]:
        """Device nodes and driver mounts for the container's GPUs; fake ones get only the variable."""
        if not uuids:
            return [], []
        env["CUDA_VISIBLE_DEVICES"] = ",".join(uuids)
        real = [self.nvidia[u] for u in uuids if u in self.nvidia]
        if not real:
            return [], []
        if self._driver_mounts is None:
            self._driver_mounts = nvidia.driver_mounts()
        nvidia.container_env(env, uuids)
        return [f"/dev/nvidia{g.minor}" for g in real], self._driver_mounts

    def _volume_mounts(self, volumes: list[tuple[str, str, str, bool]], held: ExitStack) -> list[BindMount]:
        """Bind mounts of the volumes; the sub_path ones are from mounts that last as long as `held`."""
        if volumes and not self.volumes_root:
            raise ContainerError("this worker mounts no volumes (see shoal worker --volumes)")
        try:
            return [self._volume_mount(vid, sub, path, readonly, held) for vid, sub, path, readonly in volumes]
        except BaseException:
            held.close()
            raise

    def _volume_mount(self, volume_id: str, sub_path: str, path: str, readonly: bool, held: ExitStack) -> BindMount:
        root = os.path.join(self.volumes_root, volume_id)
        if sub_path:
            root = held.enter_context(sub_paths.sub_path_mount(root, sub_path, self.sub_paths_dir))
        return BindMount(root, path, readonly)

    def _ca_mounts(self, env: dict[str, str]) -> list[BindMount]:
        """Mount the host's CA bundle and point TLS clients at it (unless the image chose its own)."""
        if not self.ca_bundle:
            return []
        for name in CA_ENV:
            env.setdefault(name, CA_MOUNT)
        return [BindMount(self.ca_bundle, CA_MOUNT)]

    def sample(self) -> Load:
        """The machine's busy fraction, each container's cores since the last sample and memory
        now, and what each has used above its reservation so far; taken once a second."""
        now, used, memory = time.monotonic(), {}, {}
        for task_id in self.containers:
            cpu_seconds, memory_bytes = self.runtime.cpu_seconds(task_id), self.runtime.memory_bytes(task_id)
            self._excess.read(task_id, cpu_seconds, memory_bytes, now)
            if cpu_seconds is not None:
                used[task_id] = cpu_seconds
            if memory_bytes is not None:
                memory[task_id] = memory_bytes
        busy, cores = self._cpu.read(used)
        return Load(busy, cores, memory, self._excess.totals(), self._gpu_utilization())

    def _gpu_utilization(self) -> dict[str, float]:
        """Each container's real GPUs' utilisation, on average over them."""
        if self._real_gpus and self._utilization is None:
            self._utilization = nvidia.Utilization()
        found = {}
        for task_id, uuids in self._real_gpus.items():
            readings = [p for uuid in uuids if (p := self._utilization.percent(uuid)) is not None]
            if readings:
                found[task_id] = sum(readings) / len(readings)
        return found

    async def exec(self, task_id: str, args: list[str], options: ExecOptions) -> Exec | None:
        """A command run in the task's container; None if the task has no container running here."""
        container = self.containers.get(task_id)
        if container is None:
            return None
        return await self.runtime.exec(
            container.id, args, options.cwd, options.env, options.merge_stderr, options.terminal
        )

    async def copy_changes(self, task_id: str, into: str) -> None:
        """What the running container changed in its file system (its overlay's upper dir: files,
        whiteouts and opaque directories), copied into `into` while its processes are paused."""
        container = self.containers.get(task_id)
        if container is None:
            raise ContainerError(f"Container {task_id} is not running here")
        async with self.runtime.paused(container):
            proc = await asyncio.create_subprocess_exec(
                "cp", "-a", f"{container.upper_dir}/.", into, stderr=asyncio.subprocess.PIPE
            )
            _, err = await proc.communicate()
        if proc.returncode:
            raise ContainerError(f"Could not copy the changes of container {task_id}: {err.decode().strip()}")

    async def open_tunnel(
        self, task_id: str, port: int, h2: bool = False, encrypted: bool = True
    ) -> tuple[int, Callable[[], Awaitable[None]]]:
        """A port here passing its connections to a container's `port` (see tls_forward.py), and what
        closes it: a TLS one, or a plain one, which for a container on this machine's network is the
        port itself."""
        target = self._reached_at(task_id)
        if not encrypted and target == LOOPBACK:
            return port, _serving_nothing
        if self.forwarder is None:
            raise ContainerError("this worker has no certificate for tunnels")
        peers = self._inbound.get(task_id)
        if encrypted:
            return await self.forwarder.open(target, port, h2, peers)
        return await forward(self.forwarder.host, target, port, peers=peers)

    def _reached_at(self, task_id: str) -> str:
        """Where this machine reaches a container's ports: its own address, or this machine's loopback."""
        container = self.containers.get(task_id)
        if container is None:
            raise ContainerError(f"Container {task_id} is not running here")
        return container.address or LOOPBACK

    async def server_address(self, task_id: str, port: int, wait: float = 0) -> tuple[str, int]:
        """Where shoal's machine reaches `port` of a container with a network of its own: its address
        there (this worker is on shoal's machine), at once; the caller waits for it to listen."""
        container = self.containers.get(task_id)
        if container is None or container.address is None:
            raise ContainerError(f"Container {task_id} is not running here with a network of its own")
        return container.address, port

    async def expose(self, task_id: str, port: int, wait: float, peers: list[str] | None = None) -> int:
        """A port of this machine passing its connections (from the `peers` networks alone, when
        given) to `port` of a container with a network of its own, opened once something listens
        there (within `wait` seconds; ContainerError if not); it closes with the container. A joined
        worker's way for the control plane to a server's or a sandbox's port."""
        if (task_id, port) in self._exposed:
            return self._exposed[(task_id, port)][0]
        address, _ = await self.server_address(task_id, port)
        deadline = time.monotonic() + wait
        while not await accepts(address, port, PROBE_TIMEOUT):
            if time.monotonic() > deadline or task_id not in self.containers:
                raise ContainerError(f"nothing accepted connections on port {port} within {wait:.0f} seconds")
            await asyncio.sleep(0.1)
        self._exposed[(task_id, port)] = await forward("0.0.0.0", address, port, peers=peers)
        return self._exposed[(task_id, port)][0]

    async def probe_tcp(self, task_id: str, port: int) -> bool:
        """Whether something accepts connections on a container's `port`."""
        try:
            return await accepts(self._reached_at(task_id), port, PROBE_TIMEOUT)
        except ContainerError:
            return False

    async def stop(self, task_id: str, graceful: bool = False) -> None:
        container = self.containers.get(task_id)
        if container:
            await container.kill(signal.SIGTERM if graceful else signal.SIGKILL)

    async def run_build_step(
        self,
        lower_dirs: list[str],
        upper_dir: str,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        user: str | None,
        log_text: Callable[[str], None],
        volumes: list[tuple[str, str, str, bool]] = [],
    ) -> int:
        """One image build step (a RUN) in a container whose writes become the layer; `volumes`
        (run_commands(volumes=)) are mounted as a function's are."""
        env = dict(env)
        staged = ExitStack()
        spec = ContainerSpec(
            id="bu-" + hashlib.sha256(upper_dir.encode()).hexdigest()[:16],
            lower_dirs=lower_dirs,
            args=argv,
            env=env,
            cwd=workdir or "/",
            user=user,
            upper_dir=upper_dir,
            bind_mounts=[*self._ca_mounts(env), *self._volume_mounts(volumes, staged)],
        )
        with staged:
            container = await self.runtime.start(spec, lambda fd, data: log_text(data.decode(errors="replace")))
        try:
            return await container.wait()
        finally:
            await self.runtime.remove(container)
            if volumes:  # their mount points are not part of the layer
                points = tuple(path for _, _, path, _ in volumes)
                await asyncio.to_thread(drop_runtime_files, upper_dir, LayerView(lower_dirs), [], points)

    async def close(self) -> None:
        for container in list(self.containers.values()):
            await container.kill()
        for watcher in list(self._watchers):
            try:
                await asyncio.wait_for(watcher, 10)
            except Exception:
                pass
        await self.clear_leftovers()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._utilization:
            self._utilization.close()


def _private_network_hosts(task_dir: str, plan: ContainerPlan) -> list[BindMount]:
    """The container's /etc/hosts on a private network: `i6pn.modal.local` names its address there,
    and so does its host name, unique to it (NCCL and Gloo tell their peers apart by it)."""
    if not plan.i6pn_address:
        return []
    mapped = ipaddress.IPv6Address(plan.i6pn_address).ipv4_mapped
    path = os.path.join(task_dir, "hosts")
    with open(path, "w") as f:
        f.write(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{plan.i6pn_address}\ti6pn.modal.local\n{mapped or plan.i6pn_address}\t{plan.task_id}\n"
        )
    return [BindMount(path, "/etc/hosts")]
