"""Running containers with runc: one foreground `runc run` subprocess per container."""

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

from . import overlay
from .cgroups import CpuHierarchy, MemoryHierarchy, cpu_hierarchy, memory_hierarchy
from .exec import Exec, start_exec
from .network import Bridge
from .oci import build_config, cgroups_path
from .spec import ContainerError, ContainerSpec
from .users import resolve_user

log = logging.getLogger(__name__)

OutputCallback = Callable[[int, bytes], None]

START_TIMEOUT = 60.0  # runc normally starts a container in well under a second
PID_POLL_INTERVAL = 0.002
DRAIN_TIMEOUT = 5.0  # after runc exits, only fds passed out of the container can hold the pipes open
CHUNK = 65536


class Container:
    """A started container; its runc process stays our child until the container exits."""

    def __init__(
        self,
        runtime: "Runtime",
        spec: ContainerSpec,
        proc: asyncio.subprocess.Process,
        on_output: OutputCallback | None,
    ):
        self.id = spec.id
        # where its writes go: a throw-away dir in its bundle, or the spec's own (a build step's layer)
        self.upper_dir = runtime._upper(spec, os.path.join(runtime.bundles_dir, spec.id))
        self.pid: int | None = None  # set once runc reports the process running
        self.address: str | None = None  # with a network of its own, its address there
        self.oom_killed = False
        self._runtime = runtime
        self._proc = proc
        self._on_output = on_output
        # runc's own errors come before the process runs; held back so a failed
        # start can report them in its exception instead of as container output.
        self._early_stderr = bytearray()
        self._pumps = [asyncio.create_task(self._pump(s, fd)) for fd, s in ((1, proc.stdout), (2, proc.stderr)) if s]
        self._exit = asyncio.create_task(self._wait_exit())

    async def wait(self) -> int:
        """The process's exit code, 128+signal if it was killed."""
        return await asyncio.shield(self._exit)

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self._proc.returncode is not None:
            return
        rc, _, err = await self._runtime._runc("kill", self.id, str(int(sig)))
        if rc != 0 and self._proc.returncode is None and "not running" not in err and "does not exist" not in err:
            raise ContainerError(f"runc kill {self.id}: {err.strip()}")

    def _started(self, pid: int) -> None:
        self.pid = pid
        early, self._early_stderr = bytes(self._early_stderr), bytearray()
        if early:
            self._emit(2, early)

    def _emit(self, fd: int, data: bytes) -> None:
        if self._on_output is None:
            return
        try:
            self._on_output(fd, data)
        except Exception:
            # Keep draining the pipes (a blocked pipe would stall the container) but stop calling back.
            log.exception("output callback of container %s failed; discarding its further output", self.id)
            self._on_output = None

    async def _pump(self, stream: asyncio.StreamReader, fd: int) -> None:
        while chunk := await stream.read(CHUNK):
            if fd == 2 and self.pid is None:
                self._early_stderr += chunk
            else:
                self._emit(fd, chunk)

    async def _wait_exit(self) -> int:
        rc = await self._proc.wait()
        if rc < 0:  # runc itself was killed by a signal
            rc = 128 - rc
        _, pending = await asyncio.wait(self._pumps, timeout=DRAIN_TIMEOUT)
        for task in pending:
            task.cancel()
        # runc ran with --keep, so the cgroup and its OOM counter are still there.
        memory = self._runtime._memory
        self.oom_killed = memory is not None and memory.oom_killed(cgroups_path(self.id))
        return rc


async def _despite_cancellation(coro: Awaitable[None]) -> None:
    """Run coro to its end even if the caller is cancelled again meanwhile (it is being cancelled already)."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})
    task.result()


class Runtime:
    def __init__(self, state_dir: str):
        self.state_dir = os.path.abspath(state_dir)
        self.runc_root = os.path.join(self.state_dir, "runc")
        self.bundles_dir = os.path.join(self.state_dir, "bundles")
        self._runc_bin = shutil.which("runc") or "/usr/sbin/runc"
        self._memory: MemoryHierarchy | None = memory_hierarchy()
        self._cpu: CpuHierarchy | None = cpu_hierarchy()
        self.bridge = Bridge(self.state_dir)

    async def _runc(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            self._runc_bin,
            "--root",
            self.runc_root,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def exec(
        self,
        container_id: str,
        args: list[str],
        cwd: str = "",
        env: dict[str, str] = {},
        merge_stderr: bool = False,
        terminal: tuple[int, int] | None = None,
    ) -> Exec:
        """Run `args` in the running container `container_id`, as its own process runs (user,
        environment, working directory), with `cwd` and `env` over those; on a terminal of
        (rows, columns) if `terminal` is given."""
        runc = [self._runc_bin, "--root", self.runc_root]
        return await start_exec(runc, container_id, args, cwd, env, merge_stderr, terminal)

    async def start(self, spec: ContainerSpec, on_output: OutputCallback | None = None) -> Container:
        """Run spec.args in a new container; return once the process runs.

        Raises ContainerError, after undoing everything, when it cannot start (runc's message included).
        A cancelled start is undone once runc is done starting: `runc run` killed part way leaves its
        init process behind, still setting up the container in the bundle that is being deleted.
        """
        starting = asyncio.create_task(self._start(spec, on_output))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            await _despite_cancellation(self._undo_start(starting))
            raise

    async def _undo_start(self, starting: "asyncio.Task[Container]") -> None:
        try:
            container = await starting
        except Exception:
            return  # a failed start undid itself
        try:
            await self.remove(container)
        except ContainerError:
            log.exception("could not remove container %s after its start was cancelled", container.id)

    async def _start(self, spec: ContainerSpec, on_output: OutputCallback | None) -> Container:
        # runc's own rule for ids; it also keeps the bundle path (deleted recursively later) inside bundles_dir.
        if not re.fullmatch(r"[\w+.-]+", spec.id) or spec.id in (".", ".."):
            raise ContainerError(f"invalid container id {spec.id!r}")
        if not spec.lower_dirs:
            raise ContainerError("a container needs at least one lower dir")
        for d in spec.lower_dirs:
            if not os.path.isdir(d):
                raise ContainerError(f"lower dir {d} does not exist")
        bundle = os.path.join(self.bundles_dir, spec.id)
        try:
            os.makedirs(bundle)
        except FileExistsError:
            raise ContainerError(f"container {spec.id} already exists") from None
        container = None
        try:
            self._prepare_bundle(spec, bundle)
            # Synchronous (about a millisecond): a mount finishing in a thread after a
            # cancellation could land under the bundle while it is being deleted.
            overlay.mount(
                spec.lower_dirs, self._upper(spec, bundle), os.path.join(bundle, "work"), os.path.join(bundle, "rootfs")
            )
            attached = (
                await self.bridge.attach(spec.id, spec.allowed_networks, spec.allowed_domains)
                if spec.own_network
                else None
            )
            self._write_config(spec, bundle, attached.netns if attached else None)
            pid_file = os.path.join(bundle, "pid")
            proc = await asyncio.create_subprocess_exec(
                self._runc_bin,
                "--root",
                self.runc_root,
                "--log",
                os.path.join(bundle, "runc.log"),
                "run",
                "--bundle",
                bundle,
                "--pid-file",
                pid_file,
                "--keep",
                spec.id,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if on_output else asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # keep terminal signals (Ctrl-C) meant for shoal away from runc
            )
            container = Container(self, spec, proc, on_output)
            container.address = attached.address if attached else None
            container._started(await self._wait_running(container, pid_file))
            return container
        except BaseException:
            await self._discard(spec.id, container)
            raise

    @staticmethod
    def _upper(spec: ContainerSpec, bundle: str) -> str:
        return spec.upper_dir or os.path.join(bundle, "upper")

    def _prepare_bundle(self, spec: ContainerSpec, bundle: str) -> None:
        upper, work = self._upper(spec, bundle), os.path.join(bundle, "work")
        for d in (os.path.join(bundle, "rootfs"), work, upper):
            os.makedirs(d, exist_ok=True)
        if os.stat(upper).st_dev != os.stat(work).st_dev:
            # overlay needs its work dir on the upper dir's filesystem.
            raise ContainerError(f"upper dir {upper} must be on the same filesystem as {self.state_dir}")

    def _write_config(self, spec: ContainerSpec, bundle: str, netns: str | None) -> None:
        limit_swap = self._memory is not None and self._memory.swap_limit_supported()
        config = build_config(spec, resolve_user(os.path.join(bundle, "rootfs"), spec.user), limit_swap, netns)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)

    async def _wait_running(self, container: Container, pid_file: str) -> int:
        """The container's pid, once runc has written it: runc exits without writing it if the start fails."""
        proc = container._proc
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while not os.path.exists(pid_file):
            if proc.returncode is not None and not os.path.exists(pid_file):
                await container.wait()
                message = container._early_stderr.decode(errors="replace").strip()
                raise ContainerError(
                    f"container {container.id} failed to start: "
                    + (message or f"runc exited with status {proc.returncode}")
                )
            if asyncio.get_running_loop().time() > deadline:
                raise ContainerError(f"container {container.id} not running after {START_TIMEOUT:.0f}s")
            await asyncio.sleep(PID_POLL_INTERVAL)
        with open(pid_file) as f:
            return int(f.read().strip())

    async def _discard(self, container_id: str, container: Container | None) -> None:
        """Undo a start that failed or was cancelled part way."""
        if container is not None:
            if container._proc.returncode is None:
                container._proc.kill()
            # Also kills a container process that runc left behind when killed mid-start.
            await self._runc("delete", "--force", container_id)
            await container.wait()
        await self.bridge.detach(container_id)
        await self._remove_bundle(container_id)

    async def remove(self, container: Container) -> None:
        """Kill the container if running, delete it, unmount and delete its bundle (spec.upper_dir is kept)."""
        await container.kill()
        await container.wait()
        rc, _, err = await self._runc("delete", "--force", container.id)
        if rc != 0 and "does not exist" not in err:
            raise ContainerError(f"runc delete {container.id}: {err.strip()}")
        await self.bridge.detach(container.id)
        await self._remove_bundle(container.id)

    async def _remove_bundle(self, container_id: str) -> None:
        """Unmount the rootfs and delete the bundle with its throw-away upper dir (a spec.upper_dir lives elsewhere)."""
        bundle = os.path.join(self.bundles_dir, container_id)
        for point in overlay.mounts_under(bundle):
            # In a thread: unmounting an overlay syncs its upper file system, which can take seconds
            # that would stall every request and the noticing (the metered end) of other containers' exits.
            await asyncio.to_thread(overlay.unmount, point)
        if overlay.mounts_under(bundle):
            # Deleting through a mounted rootfs would write whiteouts into a kept upper dir.
            raise ContainerError(f"{bundle} is still mounted; not removing it")
        if os.path.exists(bundle):
            await asyncio.to_thread(shutil.rmtree, bundle)

    def cpu_seconds(self, container_id: str) -> float | None:
        """CPU time the container's processes have used, None where cgroups do not account it."""
        return self._cpu.usage_seconds(cgroups_path(container_id)) if self._cpu else None

    def memory_bytes(self, container_id: str) -> int | None:
        """Memory the container's processes use (file cache aside), None where cgroups do not account it."""
        return self._memory.working_set_bytes(cgroups_path(container_id)) if self._memory else None

    @contextlib.asynccontextmanager
    async def paused(self, container: Container) -> AsyncIterator[None]:
        """Its processes frozen meanwhile (the cgroup freezer), so its files hold still."""
        rc, _, err = await self._runc("pause", container.id)
        if rc != 0:
            raise ContainerError(f"runc pause {container.id}: {err.strip()}")
        try:
            yield
        finally:
            await self._runc("resume", container.id)

    async def list_ids(self) -> list[str]:
        rc, out, err = await self._runc("list", "--quiet")
        if rc != 0:
            raise ContainerError(f"runc list: {err.strip()}")
        return out.split()

    async def cleanup_all(self) -> int:
        """Delete every container in our runc root and all bundles, leftovers of earlier processes
        included; returns how many containers there were."""
        ids = await self.list_ids()
        results = await asyncio.gather(*(self._runc("delete", "--force", cid) for cid in ids))
        failed = [
            f"{cid}: {err.strip()}"
            for cid, (rc, _, err) in zip(ids, results)
            if rc != 0 and "does not exist" not in err
        ]
        for point in overlay.mounts_under(self.state_dir):
            overlay.unmount(point)
        if overlay.mounts_under(self.state_dir):
            raise ContainerError(f"mounts under {self.state_dir} remain after unmounting")
        if os.path.exists(self.bundles_dir):
            await asyncio.to_thread(shutil.rmtree, self.bundles_dir)
        await self.bridge.clear()
        if failed:
            raise ContainerError("could not delete containers: " + "; ".join(failed))
        return len(ids)
