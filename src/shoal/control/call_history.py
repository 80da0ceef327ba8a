"""A function's inputs as `modal function calls` and `modal function stats` show them.

When each input was queued, started and finished, which container ran it and how it ended:
from the store, with what runs now (and outputs not written yet) from the calls in memory.
"""

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modal_proto import api_pb2
from sqlalchemy import select

from ..store import schema as t
from ..store.database import Database
from .calls import Calls
from .containers import usage_samples
from .scheduler import Task

Status = api_pb2.FunctionCallInputStatus
# A finished input's GenericResult status, as the input status of the same name.
_FINISHED = {
    value: Status.Value(name.replace("GENERIC_STATUS_", "FUNCTION_CALL_INPUT_STATUS_"))
    for name, value in api_pb2.GenericResult.GenericStatus.items()
    if name != "GENERIC_STATUS_UNSPECIFIED"
}
_IN_FLIGHT = (Status.FUNCTION_CALL_INPUT_STATUS_PENDING, Status.FUNCTION_CALL_INPUT_STATUS_RUNNING)
TIMED_OUT = (Status.FUNCTION_CALL_INPUT_STATUS_TIMEOUT, Status.FUNCTION_CALL_INPUT_STATUS_IDLE_TIMEOUT)
PERCENTILES = (5000, 9000, 9900)  # basis points: what `modal function stats` shows


@dataclass
class InputRecord:
    input_id: str
    call_id: str
    enqueued_at: float
    status: int  # a FunctionCallInputStatus
    task_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    method_name: str | None = None  # of a class's input


@dataclass
class Stats:
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    in_flight: int = 0  # queued or running at the end of the range
    percentiles: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> basis points -> value
    containers: int = 0
    containers_started: int = 0  # ran the function
    containers_failed: int = 0  # ended before they ran it
    containers_starting: int = 0
    # metric -> basis points -> value: startup time (from the process's start to its first input
    # request) of the containers started in the range, and their use as sampled in it
    container_percentiles: dict[str, dict[int, float]] = field(default_factory=dict)


def percentiles(values: Sequence[float]) -> dict[int, float]:
    if len(values) < 2:
        return {bp: values[0] for bp in PERCENTILES} if values else {}
    cuts = statistics.quantiles(values, n=10_000, method="inclusive")
    return {bp: cuts[bp - 1] for bp in PERCENTILES}


class CallHistory:
    def __init__(self, db: Database, calls: Calls, tasks: Mapping[str, Task]):
        self.db = db
        self.calls = calls
        self.tasks = tasks  # the scheduler's live containers: when a running one became ready

    async def with_variants(self, function_id: str) -> list[str]:
        """The function and the variants bound from it (class parameters, with_options)."""
        async with self.db.tx() as conn:
            rows = await conn.execute(select(t.functions.c.function_id).where(t.functions.c.parent_id == function_id))
            return [function_id, *(r.function_id for r in rows)]

    async def inputs(
        self,
        function_ids: Sequence[str],
        since: float = 0.0,
        until: float = math.inf,
        limit: int = 0,
        newest_first: bool = False,
    ) -> list[InputRecord]:
        """Inputs queued in [since, until), oldest first (or newest first), at most `limit` of them if given."""
        i = t.inputs.c
        query = (
            select(i.input_id, i.function_call_id, i.created_at, i.method_name, t.outputs.c.item)
            .join(t.revisions, t.revisions.c.revision_id == i.revision_id)
            .outerjoin(t.outputs, t.outputs.c.input_id == i.input_id)
            .where(t.revisions.c.function_id.in_(function_ids), i.created_at >= since)
        )
        if until != math.inf:
            query = query.where(i.created_at < until)
        query = query.order_by(*((i.created_at.desc(), i.idx.desc()) if newest_first else (i.created_at, i.idx)))
        if limit:
            query = query.limit(limit)
        async with self.db.tx() as conn:
            rows = (await conn.execute(query)).all()
        unwritten = {
            o.input_id: o
            for call_id in {r.function_call_id for r in rows if r.item is None}
            if (call := self.calls.calls.get(call_id))
            for o in call.outputs
        }
        return [self._record(r, unwritten) for r in rows]

    async def queued_at(self, function_ids: Sequence[str], since: float, until: float) -> list[float]:
        """When each input of the range was queued."""
        i = t.inputs.c
        query = (
            select(i.created_at)
            .join(t.revisions, t.revisions.c.revision_id == i.revision_id)
            .where(t.revisions.c.function_id.in_(function_ids), i.created_at >= since, i.created_at < until)
        )
        async with self.db.tx() as conn:
            return [r.created_at for r in await conn.execute(query)]

    def _record(self, row, unwritten: dict[str, api_pb2.FunctionGetOutputsItem]) -> InputRecord:
        record = InputRecord(
            row.input_id,
            row.function_call_id,
            row.created_at,
            Status.FUNCTION_CALL_INPUT_STATUS_PENDING,
            method_name=row.method_name,
        )
        if running := self.calls.running.get(row.input_id):
            record.status, record.task_id, record.started_at = (
                Status.FUNCTION_CALL_INPUT_STATUS_RUNNING,
                running.task_id,
                running.started_at,
            )
        elif row.item is not None or row.input_id in unwritten:
            out = api_pb2.FunctionGetOutputsItem.FromString(row.item) if row.item else unwritten[row.input_id]
            record.status = _FINISHED.get(out.result.status, Status.FUNCTION_CALL_INPUT_STATUS_UNSPECIFIED)
            record.task_id, record.finished_at = out.task_id, out.output_created_at
            record.started_at = out.input_started_at or None  # none for an input that never reached a container
        return record

    async def stats(self, function_ids: Sequence[str], since: float, until: float, task_id: str = "") -> Stats:
        """What happened to the inputs queued in [since, until), and to the containers started then."""
        records = [r for r in await self.inputs(function_ids, since, until) if not task_id or r.task_id == task_id]
        stats = Stats()
        execution, latency = [], []
        for r in records:
            if r.status in _IN_FLIGHT:
                stats.in_flight += 1
                continue
            if r.status == Status.FUNCTION_CALL_INPUT_STATUS_SUCCESS:
                stats.succeeded += 1
            elif r.status in TIMED_OUT:
                stats.timed_out += 1
            else:
                stats.failed += 1
            latency.append(r.finished_at - r.enqueued_at)
            if r.started_at:
                execution.append(r.finished_at - r.started_at)
        metrics = {"Execution time (s)": execution, "End-to-end latency (s)": latency}
        stats.percentiles = {name: percentiles(values) for name, values in metrics.items() if values}

        c = t.tasks.c
        query = select(c.task_id, c.state, c.started_at, c.finished_at, c.ready_at).where(
            c.function_id.in_(function_ids), c.started_at >= since, c.started_at < until
        )
        if task_id:
            query = query.where(c.task_id == task_id)
        startup = []
        async with self.db.tx() as conn:
            for task in await conn.execute(query):
                stats.containers += 1
                if task.state == "starting":
                    stats.containers_starting += 1
                elif task.finished_at == task.started_at:  # stopped before its process ran (containers.py)
                    stats.containers_failed += 1
                else:
                    stats.containers_started += 1
                    live = self.tasks.get(task.task_id)
                    if ready_at := task.ready_at or (live.ready_at if live else 0.0):
                        startup.append(ready_at - task.started_at)
        samples = await usage_samples(self.db, function_ids, since, until, task_id)
        metrics = {
            "Startup time (s)": startup,
            "CPU Usage (cores)": [row.cores for row in samples],
            "Memory Usage (GiB)": [row.memory_gib for row in samples],
            "GPU Utilization (%)": [row.gpu_utilization for row in samples if row.gpu_utilization is not None],
        }
        stats.container_percentiles = {name: percentiles(values) for name, values in metrics.items() if values}
        return stats
