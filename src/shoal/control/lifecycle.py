"""Container lifecycle: the scheduler's decisions carried out on the workers.

The scheduler decides when a container of a revision starts and stops; this
places it in the pool, starts it on its worker with its plan, writes its output
to the app log and, once it exits, frees what it held and settles the inputs
it was running.
"""

import asyncio
import logging
import time
from collections.abc import Collection
from functools import partial

from modal_proto import api_pb2

from ..images.store import LayerStore, Lease
from ..worker.agent import ContainerPlan
from ..worker.excess import Excess
from .calls import Calls, Input
from .clusters import ipv6_form, machine_ip
from .container_plans import ContainerPlans
from .containers import Containers
from .errors import NotFound
from .functions import Functions, Revision
from .images import Images
from .logs import Logs
from .placement import Allocation, Pool, request_of
from .scheduler import Scheduler, Task, members
from .servers import Servers
from .tunnels import Tunnels
from .workers import Workers

log = logging.getLogger(__name__)
GenericResult = api_pb2.GenericResult


class Lifecycle:
    # Set by the platform once they are built: they call back into this, or need the workers.
    scheduler: Scheduler
    workers: Workers
    tunnels: Tunnels
    servers: Servers

    def __init__(
        self,
        pool: Pool,
        calls: Calls,
        containers: Containers,
        logs: Logs,
        functions: Functions,
        images: Images,
        layers: LayerStore,
        plans: ContainerPlans,
    ):
        self.pool = pool
        self.calls = calls
        self.containers = containers
        self.logs = logs
        self.functions = functions
        self.images = images
        self.layers = layers
        self.plans = plans
        self._starting: set[asyncio.Task] = set()
        self._leases: dict[str, Lease] = {}  # task id -> the image layers its container uses

    def place(self, revision: Revision, task_ids: list[str], avoid: Collection[str]) -> list[Allocation] | None:
        request = request_of(revision.definition, revision.gpu_choices)
        return self.pool.place_all(request, task_ids, revision.definition.image_id, avoid)

    async def launch(self, task: Task) -> None:
        await self.containers.placed(task)
        # Started in the background: the scheduler goes on while the container boots.
        starting = asyncio.create_task(self._start_container(task))
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)

    async def check_sandbox(self, definition: api_pb2.Sandbox) -> None:
        """What a sandbox's container needs exists: its image, built, its mounts and its volumes."""
        await self.images.built(definition.image_id)
        await self.plans.check_sandbox(definition)

    async def start_now(self, task: Task) -> str:
        """Start a container the scheduler does not manage (a sandbox's) and wait until it runs;
        returns why it could not start, "" once it runs."""
        await self.containers.placed(task)
        return await self._start_container(task)

    async def _start_container(self, task: Task) -> str:
        output = None
        try:
            link = self.workers.link(task.allocation.worker_id)
            if link is None:
                raise NotFound(f"Worker {task.allocation.worker_id} is gone")
            plan = await self._plan(task)
            output = _OrderedOutput(self.logs, task, self.calls)
            await link.start(
                plan,
                output.put,
                lambda code, oom, excess: self._container_exited(task, code, oom, excess=excess, output=output),
            )
        except Exception as e:
            log.exception("cannot start container for %s", task.function_id)
            await self.logs.append(task.app_id, task.task_id, task.function_id, 2, f"{e}\n")
            await self._container_exited(task, -1, False, startup_error=str(e), output=output)
            return str(e) or type(e).__name__
        await self.containers.running(task.task_id, time.time())
        return ""

    async def _plan(self, task: Task) -> ContainerPlan:
        if task.sandbox:
            image_id, make = task.sandbox.definition.image_id, partial(self.plans.sandbox, task.task_id, task.sandbox)
            private_network = False
        else:
            revision = await self.functions.revision(task.revision_id)
            image_id, make = revision.definition.image_id, partial(self.plans.plan, task.task_id, revision)
            private_network = task.cluster is not None or revision.definition.i6pn_enabled
        built = await self.images.built(image_id)
        # Held until the container exits, so that image garbage collection leaves its layers alone.
        self._leases[task.task_id] = await self.layers.hold(built.layers)
        plan = await make(built, await self.layers.ensure(built.layers))
        plan.gpus = [g.uuid for g in task.allocation.gpus]
        if private_network:
            ip = await asyncio.to_thread(machine_ip, self.workers.address(task.allocation.worker_id))
            plan.i6pn_address = ipv6_form(ip)
            if task.cluster:
                task.cluster.addresses[task.rank] = ip
        return plan

    async def terminate(self, task: Task, graceful: bool = False) -> None:
        """Kill the container, or when `graceful`, send it SIGTERM."""
        if link := self.workers.link(task.allocation.worker_id):
            await link.stop(task.task_id, graceful)

    async def worker_lost(self, worker_id: str) -> None:
        """Like a preemption: the inputs its containers were running go back to the queue,
        their retries untouched, and run elsewhere; the containers count as killed."""
        for task in list(self.scheduler.tasks.values()):
            if task.allocation.worker_id == worker_id:
                for member in members(task):  # a cluster's lead runs its inputs, wherever it is
                    self.calls.requeue_running(member.task_id)
                if not task.kill_status:
                    task.kill_status = GenericResult.GENERIC_STATUS_INTERNAL_FAILURE
                    task.kill_message = f"Worker {worker_id} was lost"

    async def _container_exited(
        self,
        task: Task,
        code: int,
        oom: bool,
        startup_error: str = "",
        output: "_OrderedOutput | None" = None,
        excess: Excess | None = None,
    ) -> None:
        exited_at = time.time()  # before the log flush and clean-up, which are not the container's time
        if output:
            await output.flush()
        if lease := self._leases.pop(task.task_id, None):
            await self.layers.release(lease)
        await self.containers.finished(task.task_id, code, exited_at, task.ready_at, excess)
        self.pool.release(task.task_id)
        was_draining = task.state == "draining"
        self.scheduler.exited(task.task_id)
        await self.scheduler.break_cluster(task, code)
        await self.tunnels.container_ended(task.task_id)
        self.servers.container_ended(task, code)
        if task.sandbox:
            return  # it ran no inputs; its sandbox settles its own result
        if task.kill_status:
            result = GenericResult(status=task.kill_status, exception=task.kill_message)
        elif task.startup_failure is not None:
            result = task.startup_failure
        elif oom:
            result = GenericResult(
                status=GenericResult.GENERIC_STATUS_INTERNAL_FAILURE,
                exception="Container ran out of memory (OOM) and was killed; request more with memory=",
            )
        else:
            result = GenericResult(
                status=GenericResult.GENERIC_STATUS_INTERNAL_FAILURE,
                exception=startup_error or f"Container exited unexpectedly with code {code}",
            )
        await self.calls.fail_running(task.task_id, result)
        if (code != 0 or task.startup_failure) and not task.kill_status and not was_draining and not task.took_input:
            # It died before serving anything: fail the queue rather than crash-loop.
            await self.calls.fail_queued(task.revision_id, result)

    async def stop_container(self, task_id: str, graceful: bool) -> None:
        """`modal container stop`: gracefully, it finishes its inputs first; otherwise they run elsewhere."""
        task = self.scheduler.tasks.get(task_id)
        if task is None:
            raise NotFound(f"Container {task_id} is not running")
        if graceful:
            await self.scheduler.drain(task)
            return
        for member in members(task):  # a cluster stops as one
            self.calls.requeue_running(member.task_id)
        await self.scheduler.kill(task, GenericResult.GENERIC_STATUS_TERMINATED, "Container was stopped")

    async def cancel_running(self, input_ids: list[str], terminate: bool) -> None:
        """Cancelled inputs still running: tell their containers, or stop them."""
        for input_id in input_ids:
            running = self.calls.running.get(input_id)
            task = self.scheduler.tasks.get(running.task_id) if running else None
            if task is None:
                continue
            if terminate:
                await self.scheduler.kill(task, GenericResult.GENERIC_STATUS_TERMINATED, "Function call was cancelled")
            else:
                for member in members(task):  # each rank of a cluster runs the input
                    member.cancelled_inputs.append(input_id)
                    member.cancel_pulse.notify()

    async def wait_cancellations(self, task: Task, timeout: float) -> list[str]:
        if not task.cancelled_inputs:
            await task.cancel_pulse.wait(timeout)
        cancelled, task.cancelled_inputs = task.cancelled_inputs, []
        return cancelled


class _OrderedOutput:
    """Container output, written to the app log in the order it was produced, with the input
    the container was running then (when it ran exactly one)."""

    def __init__(self, logs: Logs, task: Task, calls: Calls):
        self.logs = logs
        self.task = task
        self.calls = calls
        self.queue: asyncio.Queue[tuple[int, bytes, float, Input | None] | None] = asyncio.Queue()
        self.pump = asyncio.create_task(self._pump())

    def put(self, fd: int, data: bytes) -> None:
        # A cluster's other ranks run the input its lead does.
        runs_inputs = self.task.cluster.lead if self.task.cluster else self.task.task_id
        self.queue.put_nowait((fd, data, time.time(), self.calls.input_running_on(runs_inputs)))

    async def flush(self) -> None:
        self.queue.put_nowait(None)
        await self.pump

    async def _pump(self) -> None:
        while (item := await self.queue.get()) is not None:
            fd, data, at, running = item
            await self.logs.append(
                self.task.app_id,
                self.task.task_id,
                self.task.function_id,
                fd,
                data.decode(errors="replace"),
                at,
                running.call_id if running else "",
                running.input_id if running else "",
            )
