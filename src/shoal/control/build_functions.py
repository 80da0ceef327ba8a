"""Build functions: `Image.run_function` steps, one function call made by the image builder.

The client creates the function (FunctionCreate, `is_builder_function`) on the image
built so far and sends its source, globals and arguments with the image definition.
The step runs one container of that image with the client runtime, hands it the one
input, and keeps the container's file system changes as the new layer. The container
talks to shoal over its own socket; `BuildCall` is what that socket's RPCs act on.
"""

import asyncio
import pickle
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from modal_proto import api_pb2

from ..images.builder import BuildError, Log
from ..images.layers import LayerView
from ..images.snapshot import drop_runtime_files
from ..images.spec import BuiltImage
from ..worker.agent import MOUNT_POINTS, ContainerPlan, LocalWorker
from .functions import Revision
from .ids import new_id
from .pulse import Pulse

GenericResult = api_pb2.GenericResult
DEFAULT_TIMEOUT = 3600.0
# plan(task_id, revision, image, image_dirs) -> the container of a function of that revision on that image
PlanContainer = Callable[[str, Revision, BuiltImage, list[str]], Awaitable[ContainerPlan]]
ResolveFunction = Callable[[str], Awaitable[Revision]]


@dataclass
class BuildCall:
    """The one input of a build function's container, and what came back."""

    task_id: str
    function_id: str
    input: api_pb2.FunctionInput
    input_id: str = field(default_factory=lambda: new_id("in"))
    call_id: str = field(default_factory=lambda: new_id("fc"))
    taken: bool = False
    result: GenericResult | None = None
    pulse: Pulse = field(default_factory=Pulse)

    async def next_input(self, timeout: float) -> api_pb2.FunctionInput | None:
        """The input the first time; afterwards None, once the result is in or after `timeout`."""
        if not self.taken:
            self.taken = True
            return self.input
        if self.result is None:
            await self.pulse.wait(timeout)
        return None

    @property
    def finished(self) -> bool:
        return self.result is not None

    def finish(self, result: GenericResult) -> None:
        if self.result is None:
            self.result = result
            self.pulse.notify()


class BuildFunctions:
    def __init__(self, worker: LocalWorker, resolve: ResolveFunction, plan: PlanContainer):
        self.worker = worker
        self.resolve = resolve
        self.plan = plan
        self.calls: dict[str, BuildCall] = {}  # by task id: the build containers running now

    async def run(
        self,
        function_id: str,
        fn_input: api_pb2.FunctionInput | None,
        image: BuiltImage,
        image_dirs: list[str],
        upper: str,
        log: Log,
    ) -> None:
        """Run the build function over `image` (its layer dirs `image_dirs`), its writes going to `upper`."""
        revision = await self.resolve(function_id)
        name = revision.definition.function_name
        step = f"run_function({name})"
        if fn_input is None or not fn_input.args:  # called without arguments: f()
            fn_input = api_pb2.FunctionInput(args=pickle.dumps(((), {})), data_format=api_pb2.DATA_FORMAT_PICKLE)
        call = BuildCall(new_id("ta"), function_id, fn_input)
        self.calls[call.task_id] = call
        try:
            plan = await self.plan(call.task_id, revision, image, image_dirs)
            plan.upper_dir = upper
            timeout = revision.definition.timeout_secs or DEFAULT_TIMEOUT
            log(f"=> {step}\n")
            try:
                end = await self.worker.run(plan, lambda fd, data: log(data.decode(errors="replace")), timeout)
            except Exception as e:
                raise BuildError(step, reason=f"could not start its container: {e}") from e
        finally:
            del self.calls[call.task_id]
        result = call.result
        if end.timed_out:
            raise BuildError(step, reason=f"timed out after {timeout:g} s (raise run_function's timeout=)")
        if result is None:
            why = "ran out of memory" if end.oom_killed else f"exited with code {end.code}"
            raise BuildError(step, reason=f"failed: its container {why} before the function returned")
        if result.status != GenericResult.GENERIC_STATUS_SUCCESS:
            raise BuildError(step, result.traceback.rstrip("\n"), f"failed: {result.exception or 'no result'}")
        runtime_dirs = plan.lower_dirs[len(image_dirs) :]  # the client package and code mounts
        points = (*MOUNT_POINTS, *(path for _, _, path, _ in plan.volumes))  # its volumes= too
        await asyncio.to_thread(drop_runtime_files, upper, LayerView(image_dirs), runtime_dirs, points)
