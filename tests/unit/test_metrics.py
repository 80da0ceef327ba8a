"""A function's metrics over time (control/metrics.py): buckets, groups and each group's series."""

import asyncio
import time

import pytest
from modal_proto import api_pb2

from shoal.control import metrics
from shoal.control.call_history import CallHistory
from shoal.control.calls import Calls
from shoal.control.containers import Containers
from shoal.control.errors import InvalidArgument
from shoal.control.functions import Functions
from shoal.control.placement import Allocation
from shoal.control.scheduler import Task
from shoal.store.database import Database
from shoal.worker.agent import Load
from shoal.worker.excess import Excess

GenericResult = api_pb2.GenericResult


def test_a_range_is_cut_at_multiples_of_the_bucket_width_without_its_partial_end():
    span = metrics.buckets(1000.5, 4000.0, 300)
    assert (span.start, span.width, span.count) == (900, 300, 10)  # 900 .. 3900; 3900 .. 4000 is left out
    assert (span.index(899.0), span.index(900.0), span.index(3899.9), span.index(3900.0)) == (None, 0, 9, None)
    # Without a width, the one of Modal's widths that makes nearest 100 buckets.
    assert metrics.buckets(0, 3600).width == 60  # 60 buckets; 30 s is not one of the widths
    assert metrics.buckets(0, 86400).width == 900  # 96 buckets
    for since, until, width in ((10, 10, 60), (0, 32 * 86400, 86400), (0, 3600, 30), (0, 86400, 60)):
        with pytest.raises(InvalidArgument):
            metrics.buckets(since, until, width)


def test_groups_are_all_unless_named_and_an_unknown_one_is_refused():
    assert [g.name for g in metrics.groups([])] == ["calls", "containers", "cpu", "memory", "gpu"]
    assert [g.name for g in metrics.groups(["memory", "calls", "memory"])] == ["memory", "calls"]
    with pytest.raises(InvalidArgument, match="'network'.*calls, containers, cpu, memory, gpu"):
        metrics.groups(["network"])


async def test_each_series_has_a_value_a_bucket(tmp_path):
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    functions, containers = Functions(db), Containers(db)
    fid = await functions.precreate("ap-1", "f")
    rid = (await functions.create("ap-1", api_pb2.Function(function_name="f"), fid)).revision_id
    calls = Calls(db, lambda revision_id: api_pb2.FunctionRetryPolicy())
    history = CallHistory(db, calls, {})
    start = time.time() // 60 * 60 - 600  # ten whole minutes ago
    # Containers: A runs through minutes 0-1, B only in minute 1, C from minute 3 on; D never ran.
    for task_id, begin, end in (("ta-a", 10, 110), ("ta-b", 70, 100), ("ta-c", 200, None), ("ta-d", 30, 30)):
        await containers.placed(Task(task_id, rid, fid, "ap-1", start + begin, Allocation("local", 0, 0)))
        if task_id != "ta-d":
            await containers.running(task_id, start + begin)
        if end is not None:
            await containers.finished(task_id, 0, start + end)
    # Samples of C in minute 4: two a second apart (one kept, SAMPLE_INTERVAL) and one 30 s later.
    for second, cores, gpu in ((240, 1.0, 40.0), (241, 5.0, 90.0), (270, 3.0, 60.0)):
        load = Load(0.5, {"ta-c": cores}, {"ta-c": 2**30}, {"ta-c": Excess()}, {"ta-c": gpu})
        await containers.note_usage(load, start + second)
    # Calls: two inputs, queued now (the last bucket asked for), one succeeds.
    call, _ = await calls.create(rid, api_pb2.FUNCTION_CALL_INVOCATION_TYPE_ASYNC, [(0, api_pb2.FunctionInput())] * 2)
    first, second = await calls.next_inputs(rid, "ta-c", 2, 0, asyncio.Event())
    await calls.put_output("ta-c", first.input_id, GenericResult(status=GenericResult.GENERIC_STATUS_SUCCESS), 0)
    await calls.put_output("ta-c", second.input_id, GenericResult(status=GenericResult.GENERIC_STATUS_FAILURE), 0)
    await calls.flush()

    span = metrics.buckets(start, start + 660, 60)  # the last minute is now's
    series = {s.name: v for s, v in await metrics.Metrics(db, history).export([fid], span, metrics.GROUPS)}
    assert series["running_containers_max"][:6] == [1.0, 2.0, 0.0, 1.0, 1.0, 1.0]
    assert series["started_containers_count"][:6] == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]  # D never ran
    assert series["container_cpu_usage_max"][:6] == [None, None, None, None, 3.0, None]
    assert series["cpu_usage_avg"][4] == pytest.approx((1.0 + 3.0) * 5 / 60)  # each sample stands for 5 s
    assert series["memory_usage_avg"][4] == pytest.approx(2 * 5 / 60)
    assert (series["gpu_utilization_avg"][4], series["gpu_utilization_max"][4]) == (50.0, 60.0)
    assert series["gpu_utilization_avg"][3] is None
    assert series["successful_calls_count"] == [0.0] * 10 + [1.0]
    assert series["failed_calls_count"][-1] == 1.0 and series["timed_out_calls_count"][-1] == 0.0
    assert series["execution_time_p50"][:-1] == [None] * 10 and series["execution_time_p50"][-1] >= 0
