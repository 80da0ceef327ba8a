"""Function calls: inputs in, outputs out, retries, cancellation.

Every accepted input is written to the store before the caller hears back, so
a restart loses nothing; the queues and output logs here are the in-memory view
that long-polls wait on.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from modal_proto import api_pb2
from sqlalchemy import bindparam, insert, select, update

from ..store import schema as t
from ..store.database import Database
from .errors import NotFound
from .ids import new_id
from .pulse import Pulse
from .retries import retry_delay

log = logging.getLogger(__name__)

SYNC_INVOCATIONS = (api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC, api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC_LEGACY)
OUTPUT_BATCH = 100
OUTPUT_BATCH_WINDOW = 0.05  # longest a map's output waits for others to share its request
OUTPUT_WRITE_DELAY = 0.05  # outputs gathered into one store transaction (each has a fixed cost)
CALL_GRAPH_LIMIT = 10_000  # inputs in one FunctionCall.get_call_graph answer
LATE_OUTPUT = 0.5  # seconds a container's output may trail the output of the input that printed it

GenericResult = api_pb2.GenericResult
# The call path's statements, built once: building one per call costs SQLAlchemy more
# than SQLite takes to run it.
_INSERT_CALL = insert(t.function_calls)
_INSERT_INPUTS = insert(t.inputs)
_INSERT_OUTPUTS = insert(t.outputs)
_PARENT = t.function_calls.c.parent_input_id
_MARK_DONE = update(t.inputs).where(t.inputs.c.input_id == bindparam("done_id")).values(status="done")

TERMINAL_FAILURES = (
    GenericResult.GENERIC_STATUS_FAILURE,
    GenericResult.GENERIC_STATUS_TIMEOUT,
    GenericResult.GENERIC_STATUS_INTERNAL_FAILURE,
)


@dataclass
class Input:
    input_id: str
    call_id: str
    revision_id: str
    idx: int
    input: api_pb2.FunctionInput
    invocation_type: int
    retry_count: int = 0


@dataclass
class Call:
    call_id: str
    revision_id: str
    invocation_type: int
    outputs: list[api_pb2.FunctionGetOutputsItem] = field(default_factory=list)
    unfinished: dict[str, int] = field(default_factory=dict)  # input id -> idx
    cleared: bool = False
    cancelled: bool = False
    pulse: Pulse = field(default_factory=Pulse)
    # generator output chunks (FunctionCallPutDataOut), in index order; the call's end wakes their readers too
    data_out: list[api_pb2.DataChunk] = field(default_factory=list)
    data_pulse: Pulse = field(default_factory=Pulse)
    # chunks to the running input (a web request's body), indexed from 1 (FunctionCallGetDataIn)
    data_in: list[api_pb2.DataChunk] = field(default_factory=list)
    data_in_pulse: Pulse = field(default_factory=Pulse)


@dataclass(frozen=True)
class GraphCall:
    call_id: str
    revision_id: str
    parent_input_id: str


@dataclass(frozen=True)
class GraphInput:
    input_id: str
    call_id: str
    status: int  # a GenericResult status; 0 while queued or running
    task_id: str


@dataclass
class Running:
    input: Input
    task_id: str
    started_at: float


class FunctionQueue(Pulse):
    """Queued inputs of one function revision, and the containers waiting for them.

    A new input wakes one waiting container (`notify(1)`), not all of them: with many idle
    containers, waking every one per input would cost more than the input.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: deque[Input] = deque()


class Calls:
    """Owns every call's inputs and outputs.

    Calls are keyed by the function revision they run (see functions.Revision),
    so a call started before a deploy finishes on the version it started on.
    `on_backlog(revision_id)` is called whenever a revision gains pending
    inputs, so the scheduler can add containers.
    """

    def __init__(self, db: Database, retry_policy_of: Callable[[str], api_pb2.FunctionRetryPolicy]):
        self.db = db
        self.retry_policy_of = retry_policy_of
        self.calls: dict[str, Call] = {}
        self.queues: dict[str, FunctionQueue] = {}
        self.running: dict[str, Running] = {}
        self._ended: dict[str, tuple[Input, float]] = {}  # each container's last input to end, and when
        self.on_backlog: Callable[[str], None] = lambda revision_id: None
        self._unwritten: list[dict] = []
        self._writer: asyncio.Task | None = None

    def queue(self, revision_id: str) -> FunctionQueue:
        q = self.queues.get(revision_id)
        if q is None:
            q = self.queues[revision_id] = FunctionQueue()
        return q

    async def get(self, call_id: str) -> Call:
        """A call from memory, or from the store for one memory no longer holds
        (a finished call after a restart, or a blocking call whose results were taken)."""
        call = self.calls.get(call_id)
        if call is not None:
            return call
        async with self.db.tx() as conn:
            row = (
                await conn.execute(select(t.function_calls).where(t.function_calls.c.function_call_id == call_id))
            ).one_or_none()
            if row is None:
                raise NotFound(f"Function call {call_id} not found")
            outputs = await conn.execute(
                select(t.outputs.c.item).where(t.outputs.c.function_call_id == call_id).order_by(t.outputs.c.created_at)
            )
            call = Call(row.function_call_id, row.revision_id, row.invocation_type, cancelled=row.cancelled)
            call.outputs = [api_pb2.FunctionGetOutputsItem.FromString(o.item) for o in outputs]
        self.calls[call_id] = call
        return call

    # -- caller side -------------------------------------------------------

    async def create(
        self,
        revision_id: str,
        invocation_type: int,
        items: list[tuple[int, api_pb2.FunctionInput]],
        parent_input_id: str = "",
    ) -> tuple[Call, list[Input]]:
        """A new call; `parent_input_id` is the input whose function made it, if one did."""
        call = Call(new_id("fc"), revision_id, invocation_type)
        new_inputs = self._new_inputs(call, items)
        async with self.db.tx() as conn:
            await conn.execute(
                _INSERT_CALL,
                dict(
                    function_call_id=call.call_id,
                    revision_id=revision_id,
                    invocation_type=invocation_type,
                    cancelled=False,
                    created_at=time.time(),
                    parent_input_id=parent_input_id or None,
                ),
            )
            await self._insert_inputs(conn, new_inputs)
        self.calls[call.call_id] = call
        self._enqueue(call, new_inputs)
        return call, new_inputs

    async def put_inputs(self, call_id: str, items: list[tuple[int, api_pb2.FunctionInput]]) -> list[Input]:
        call = await self.get(call_id)
        new_inputs = self._new_inputs(call, items)
        async with self.db.tx() as conn:
            await self._insert_inputs(conn, new_inputs)
        self._enqueue(call, new_inputs)
        return new_inputs

    def _new_inputs(self, call: Call, items: list[tuple[int, api_pb2.FunctionInput]]) -> list[Input]:
        return [
            Input(new_id("in"), call.call_id, call.revision_id, idx, inp, call.invocation_type) for idx, inp in items
        ]

    async def _insert_inputs(self, conn, new_inputs: list[Input]) -> None:
        if not new_inputs:
            return
        now = time.time()
        await conn.execute(
            _INSERT_INPUTS,
            [
                dict(
                    input_id=i.input_id,
                    function_call_id=i.call_id,
                    revision_id=i.revision_id,
                    idx=i.idx,
                    input=i.input.SerializeToString(),
                    status="pending",
                    retry_count=0,
                    created_at=now,
                    method_name=i.input.method_name or None,
                )
                for i in new_inputs
            ],
        )

    def _enqueue(self, call: Call, new_inputs: list[Input]) -> None:
        call.unfinished.update((i.input_id, i.idx) for i in new_inputs)
        if not new_inputs:
            return
        q = self.queue(call.revision_id)
        q.pending.extend(new_inputs)
        q.notify(len(new_inputs))
        self.on_backlog(call.revision_id)

    async def get_outputs(
        self,
        call_id: str,
        *,
        last_entry_id: str,
        timeout: float,
        clear_on_success: bool,
        start_idx: int | None = None,
    ) -> tuple[list[api_pb2.FunctionGetOutputsItem], str, int]:
        """Outputs after `last_entry_id`, waiting up to `timeout` for the first one."""
        call = await self.get(call_id)
        offset = _entry_offset(last_entry_id)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            items = call.outputs[offset:]
            if start_idx is not None:
                items = [o for o in items if o.idx == start_idx]
            if items or call.cleared or time.monotonic() >= deadline:
                break
            await call.pulse.wait(deadline - time.monotonic())
        if items and start_idx is None and call.unfinished and len(items) < OUTPUT_BATCH:
            # A map's outputs arrive one by one, and each request costs the server an RPC and
            # the client's list of every input it still waits on: a moment's wait for a fuller
            # batch (or the last output) returns many per request.
            filled_by = time.monotonic() + OUTPUT_BATCH_WINDOW
            while (
                call.unfinished
                and len(call.outputs) - offset < OUTPUT_BATCH
                and (left := filled_by - time.monotonic()) > 0
            ):
                await call.pulse.wait(left)
            items = call.outputs[offset:]
        if clear_on_success and (start_idx is not None or not items):
            # The caller acknowledged what it needs; results are no longer kept for it.
            call.cleared = not call.unfinished
            if call.cleared and call.invocation_type in SYNC_INVOCATIONS:
                # Nobody else waits on a blocking call's results (a spawned call may
                # still be fetched by id), so it leaves memory; the store keeps them.
                self.calls.pop(call_id, None)
        return list(items), str(len(call.outputs)), len(call.unfinished)

    async def retry_inputs(self, call_id: str, input_ids: list[str]) -> list[str]:
        """Client-requested retries: the inputs go back on the queue as they were."""
        call = await self.get(call_id)
        retried = []
        async with self.db.tx() as conn:
            for input_id in input_ids:
                row = (await conn.execute(select(t.inputs).where(t.inputs.c.input_id == input_id))).one_or_none()
                if row is None or row.function_call_id != call_id:
                    raise NotFound(f"Input {input_id} not found in call {call_id}")
                await conn.execute(
                    update(t.inputs)
                    .where(t.inputs.c.input_id == input_id)
                    .values(status="pending", retry_count=row.retry_count + 1)
                )
                inp = api_pb2.FunctionInput.FromString(row.input)
                retried.append(
                    Input(input_id, call_id, call.revision_id, row.idx, inp, call.invocation_type, row.retry_count + 1)
                )
        self._enqueue(call, retried)
        return [i.input_id for i in retried]

    async def cancel(self, call_id: str) -> list[str]:
        """Cancel a call: every unfinished input ends as terminated; returns the ids still running."""
        call = await self.get(call_id)
        call.cancelled = True
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.function_calls).where(t.function_calls.c.function_call_id == call_id).values(cancelled=True)
            )
        q = self.queue(call.revision_id)
        q.pending = deque(i for i in q.pending if i.call_id != call_id)
        running = [r.input.input_id for r in self.running.values() if r.input.call_id == call_id]
        terminated = _result(GenericResult.GENERIC_STATUS_TERMINATED, "Function call was cancelled")
        for input_id, idx in list(call.unfinished.items()):
            await self._record_output(call, input_id, idx, 0, terminated)
        return running

    def busy_revisions(self) -> set[str]:
        """The revisions with calls not finished yet: inputs queued, running or waiting to retry."""
        return {call.revision_id for call in self.calls.values() if call.unfinished}

    # -- container side ----------------------------------------------------

    async def next_inputs(
        self, revision_id: str, task_id: str, max_n: int, timeout: float, stop: asyncio.Event, linger: float = 0.0
    ) -> list[Input]:
        """Hand up to `max_n` queued inputs to a container, waiting up to `timeout` for the first;
        a batch (`@modal.batched`) then waits up to `linger` for the rest."""
        q = self.queue(revision_id)
        deadline = time.monotonic() + timeout
        while not q.pending and not stop.is_set() and time.monotonic() < deadline:
            await q.wait(deadline - time.monotonic())
        if stop.is_set():
            if q.pending:
                q.notify(1)  # this container is leaving: another takes its turn
            return []
        taken = self._take(q, task_id, max_n)
        filled_by = time.monotonic() + linger
        while len(taken) < max_n and (left := filled_by - time.monotonic()) > 0 and not stop.is_set():
            await q.wait(left)
            taken += self._take(q, task_id, max_n - len(taken))
        return taken

    def _take(self, q: FunctionQueue, task_id: str, n: int) -> list[Input]:
        taken = []
        now = time.time()
        while q.pending and len(taken) < n:
            inp = q.pending.popleft()
            self.running[inp.input_id] = Running(inp, task_id, now)
            taken.append(inp)
        return taken

    async def put_output(self, task_id: str, input_id: str, result: api_pb2.GenericResult, data_format: int) -> None:
        """A container's output for an input it runs; for any other input (one requeued after its
        container was lost, another container's) it is ignored."""
        running = self.running.get(input_id)
        if running is None or running.task_id != task_id:
            log.info("output from %s for input %s that it is not running; ignored", task_id, input_id)
            return
        del self.running[input_id]
        await self._finish(running, result, data_format)

    def input_running_on(self, task_id: str) -> Input | None:
        """The input a container's output belongs to: the one it runs, if it runs exactly one.

        Output can reach the server after the output of the input that printed it. So for
        LATE_OUTPUT after an input ends, output with no input running is that input's, and
        output beside a new input is no input's, rather than perhaps the wrong one's."""
        running = [r.input for r in self.running.values() if r.task_id == task_id]
        ended = self._ended.get(task_id)
        if ended and time.monotonic() - ended[1] < LATE_OUTPUT:
            return None if running else ended[0]
        return running[0] if len(running) == 1 else None

    async def fail_running(self, task_id: str, result: api_pb2.GenericResult) -> None:
        """A container ended with inputs in flight: each fails (and may be retried)."""
        for input_id, running in list(self.running.items()):
            if running.task_id == task_id:
                del self.running[input_id]
                await self._finish(running, result, 0)
        self._ended.pop(task_id, None)

    def requeue_running(self, task_id: str) -> None:
        """A container was stopped under its inputs: they go back to the queue, their retries untouched."""
        for input_id, running in list(self.running.items()):
            if running.task_id == task_id:
                del self.running[input_id]
                call = self.calls.get(running.input.call_id)
                if call and not call.cancelled:
                    self._enqueue(call, [running.input])

    async def fail_queued(
        self, revision_id: str, result: api_pb2.GenericResult, which: Callable[[Input], bool] = lambda i: True
    ) -> None:
        """Fail the queued inputs of a function (`which` of them): one that cannot start containers."""
        q = self.queue(revision_id)
        failed, kept = [], deque()
        for inp in q.pending:
            (failed if which(inp) else kept).append(inp)
        q.pending = kept
        for inp in failed:
            call = self.calls.get(inp.call_id)
            if call:
                await self._record_output(call, inp.input_id, inp.idx, inp.retry_count, result)

    async def _finish(self, running: Running, result: api_pb2.GenericResult, data_format: int) -> None:
        inp = running.input
        self._ended[running.task_id] = (inp, time.monotonic())
        call = self.calls.get(inp.call_id)
        if call is None:
            return
        if result.status in TERMINAL_FAILURES and not call.cancelled:
            delay = retry_delay(self.retry_policy_of(inp.revision_id), inp.retry_count + 1)
            if delay is not None:
                await self._retry_later(inp, delay)
                return
        await self._record_output(
            call, inp.input_id, inp.idx, inp.retry_count, result, data_format, running.task_id, running.started_at
        )

    async def _retry_later(self, inp: Input, delay: float) -> None:
        inp.retry_count += 1
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.inputs).where(t.inputs.c.input_id == inp.input_id).values(retry_count=inp.retry_count)
            )
        call = self.calls[inp.call_id]
        asyncio.get_running_loop().call_later(delay, lambda: self._requeue(call, inp))

    def _requeue(self, call: Call, inp: Input) -> None:
        if not call.cancelled:
            self._enqueue(call, [inp])

    async def _record_output(
        self,
        call: Call,
        input_id: str,
        idx: int,
        retry_count: int,
        result: api_pb2.GenericResult,
        data_format: int = 0,
        task_id: str = "",
        started_at: float = 0.0,
    ) -> None:
        if input_id not in call.unfinished:
            return
        item = api_pb2.FunctionGetOutputsItem(
            result=result,
            idx=idx,
            input_id=input_id,
            data_format=data_format,
            task_id=task_id,
            input_started_at=started_at,
            output_created_at=time.time(),
            retry_count=retry_count,
        )
        call.unfinished.pop(input_id, None)
        call.outputs.append(item)
        call.pulse.notify()
        call.data_pulse.notify()
        self._unwritten.append(
            dict(
                input_id=input_id,
                function_call_id=call.call_id,
                idx=idx,
                item=item.SerializeToString(),
                created_at=time.time(),
            )
        )
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_outputs())

    async def _write_outputs(self) -> None:
        """Outputs reach the store in batches, off the call path: the writer first lets the
        callers waiting for them be answered. An output lost to a crash before its batch is
        written leaves its input pending: it runs again."""
        await asyncio.sleep(OUTPUT_WRITE_DELAY)
        while self._unwritten:
            batch, self._unwritten = self._unwritten, []
            async with self.db.tx() as conn:
                await conn.execute(_INSERT_OUTPUTS, batch)
                await conn.execute(_MARK_DONE, [{"done_id": row["input_id"]} for row in batch])

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer

    # -- the call graph ----------------------------------------------------

    async def call_graph(self, call_id: str) -> tuple[list[GraphCall], list[GraphInput], bool]:
        """Every call and input of the tree `call_id` belongs to, from its root call down
        (FunctionCall.get_call_graph); the bool says whether it stopped at CALL_GRAPH_LIMIT inputs, and may
        have left some out."""
        root = (await self.get(call_id)).call_id
        calls: list[GraphCall] = []
        inputs: list[GraphInput] = []
        async with self.db.tx() as conn:
            while parent := await _parent_call(conn, root):
                root = parent
            level = [root]
            while level and len(inputs) < CALL_GRAPH_LIMIT:
                rows = await conn.execute(
                    select(t.function_calls.c.function_call_id, t.function_calls.c.revision_id, _PARENT).where(
                        t.function_calls.c.function_call_id.in_(level)
                    )
                )
                calls += [GraphCall(r.function_call_id, r.revision_id, r.parent_input_id or "") for r in rows]
                found = await conn.execute(
                    select(t.inputs.c.input_id, t.inputs.c.function_call_id)
                    .where(t.inputs.c.function_call_id.in_(level))
                    .order_by(t.inputs.c.created_at, t.inputs.c.idx)
                    .limit(CALL_GRAPH_LIMIT - len(inputs))
                )
                finished = await self._finished(conn, level)
                level_start = len(inputs)
                for r in found:
                    running = self.running.get(r.input_id)
                    status, task_id = (0, running.task_id) if running else finished.get(r.input_id, (0, ""))
                    inputs.append(GraphInput(r.input_id, r.function_call_id, status, task_id))
                ids = [i.input_id for i in inputs[level_start:]]
                children = await conn.execute(select(t.function_calls.c.function_call_id).where(_PARENT.in_(ids)))
                level = [r.function_call_id for r in children]
        return calls, inputs, len(inputs) >= CALL_GRAPH_LIMIT

    async def _finished(self, conn, call_ids: list[str]) -> dict[str, tuple[int, str]]:
        """Each finished input's status and container: from the store, and from memory for the
        outputs not written yet."""
        rows = await conn.execute(select(t.outputs.c.item).where(t.outputs.c.function_call_id.in_(call_ids)))
        items = [api_pb2.FunctionGetOutputsItem.FromString(r.item) for r in rows]
        for call_id in call_ids:
            if call := self.calls.get(call_id):
                items += call.outputs
        return {o.input_id: (o.result.status, o.task_id) for o in items}

    # -- generators --------------------------------------------------------

    async def put_data_out(self, task_id: str, call_id: str, chunks: list[api_pb2.DataChunk]) -> None:
        """A generator's items, from the container running the call's input (a container sends
        them all before the input's output); from any other container they are ignored."""
        call = await self.get(call_id)
        if not any(r.task_id == task_id and r.input.call_id == call_id for r in self.running.values()):
            log.info("data from %s for call %s that it is not running; ignored", task_id, call_id)
            return
        call.data_out.extend(chunks)
        call.data_out.sort(key=lambda c: c.index)
        call.data_pulse.notify()

    def put_data_in(self, call: Call, data_format: int, messages: list[bytes]) -> None:
        for data in messages:
            call.data_in.append(api_pb2.DataChunk(data_format=data_format, data=data, index=len(call.data_in) + 1))
        call.data_in_pulse.notify()

    def forget(self, call_id: str) -> None:
        """A finished call whose caller took its results and wants nothing more: it leaves memory
        (the store keeps its outputs)."""
        call = self.calls.get(call_id)
        if call is not None and not call.unfinished:
            del self.calls[call_id]

    # -- recovery ----------------------------------------------------------

    async def recover(self) -> None:
        """Queue again, after a restart, every input that had no output yet.

        Inputs that were running when the server stopped go back on the queue:
        their containers did not survive it. Other calls load when asked for.
        """
        async with self.db.tx() as conn:
            pending = list(
                await conn.execute(
                    select(t.inputs).where(t.inputs.c.status == "pending").order_by(t.inputs.c.created_at)
                )
            )
        for row in pending:
            call = await self.get(row.function_call_id)
            if call.cancelled:
                continue
            inp = Input(
                row.input_id,
                row.function_call_id,
                row.revision_id,
                row.idx,
                api_pb2.FunctionInput.FromString(row.input),
                call.invocation_type,
                row.retry_count,
            )
            self._enqueue(call, [inp])


async def _parent_call(conn, call_id: str) -> str:
    """The call whose input made `call_id`, or "" for a call made from outside any function."""
    parent_input = (
        await conn.execute(select(_PARENT).where(t.function_calls.c.function_call_id == call_id))
    ).scalar_one_or_none()
    if not parent_input:
        return ""
    row = (await conn.execute(select(t.inputs.c.function_call_id).where(t.inputs.c.input_id == parent_input))).first()
    return row.function_call_id if row else ""


def _entry_offset(last_entry_id: str) -> int:
    # The client starts from "0-0" or ""; later it echoes the entry id we gave.
    try:
        return max(0, int(last_entry_id))
    except ValueError:
        return 0


def _result(status: int, message: str) -> api_pb2.GenericResult:
    return api_pb2.GenericResult(status=status, exception=message)
