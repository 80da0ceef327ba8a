"""A function's inputs read back for `modal function calls` and `modal function stats`."""

import asyncio

import pytest
from modal_proto import api_pb2

from shoal.control.call_history import CallHistory
from shoal.control.calls import Calls
from shoal.control.containers import SAMPLES_KEPT, Containers
from shoal.control.functions import Functions
from shoal.control.placement import Allocation
from shoal.control.scheduler import Task
from shoal.store.database import Database
from shoal.worker.agent import Load
from shoal.worker.excess import Excess

Status = api_pb2.FunctionCallInputStatus
GenericResult = api_pb2.GenericResult


async def test_each_input_reads_back_with_how_it_ended_or_where_it_runs(tmp_path, monkeypatch):
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    functions = Functions(db)
    fid = await functions.precreate("ap-1", "f")
    rid = (await functions.create("ap-1", api_pb2.Function(function_name="f"), fid)).revision_id
    calls = Calls(db, lambda revision_id: api_pb2.FunctionRetryPolicy())
    history = CallHistory(db, calls, {})
    call, _ = await calls.create(
        rid, api_pb2.FUNCTION_CALL_INVOCATION_TYPE_ASYNC, [(i, api_pb2.FunctionInput()) for i in range(4)]
    )
    taken = await calls.next_inputs(rid, "ta-1", 3, 0, asyncio.Event())  # the fourth stays queued
    await calls.put_output("ta-1", taken[0].input_id, GenericResult(status=GenericResult.GENERIC_STATUS_SUCCESS), 0)
    await calls.flush()  # in the store
    monkeypatch.setattr("shoal.control.calls.OUTPUT_WRITE_DELAY", 60)
    await calls.put_output(
        "ta-1", taken[1].input_id, GenericResult(status=GenericResult.GENERIC_STATUS_TIMEOUT), 0
    )  # in memory only

    records = await history.inputs([fid])
    assert [r.status for r in records] == [
        Status.FUNCTION_CALL_INPUT_STATUS_SUCCESS,
        Status.FUNCTION_CALL_INPUT_STATUS_TIMEOUT,
        Status.FUNCTION_CALL_INPUT_STATUS_RUNNING,
        Status.FUNCTION_CALL_INPUT_STATUS_PENDING,
    ]
    assert [r.task_id for r in records] == ["ta-1", "ta-1", "ta-1", ""]
    assert all(r.enqueued_at <= r.started_at <= r.finished_at for r in records[:2])
    assert records[2].finished_at is None and records[3].started_at is None
    assert {r.call_id for r in records} == {call.call_id}
    newest = await history.inputs([fid], limit=2, newest_first=True)
    assert [r.input_id for r in newest] == [records[3].input_id, records[2].input_id]
    assert await history.inputs(["fu-other"]) == []
    assert await history.queued_at([fid], 0, records[0].enqueued_at + 1) == [r.enqueued_at for r in records]

    stats = await history.stats([fid], records[0].enqueued_at, records[3].enqueued_at + 1)
    assert (stats.succeeded, stats.failed, stats.timed_out, stats.in_flight) == (1, 0, 1, 2)
    assert set(stats.percentiles) == {"Execution time (s)", "End-to-end latency (s)"}
    assert set(stats.percentiles["Execution time (s)"]) == {5000, 9000, 9900}
    assert (await history.stats([fid], 0, records[0].enqueued_at)).succeeded == 0  # queued before the range: none
    calls._writer.cancel()  # the 60 s write delay set above


async def test_container_startup_runs_from_process_start_to_the_first_input_request(tmp_path):
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    containers, live = Containers(db), {}
    for task_id, process_start in (("ta-done", 100.0), ("ta-live", 100.5), ("ta-never", 101.0)):
        task = Task(task_id, "rv-1", "fu-1", "ap-1", 99.0, Allocation("local", 0, 0))
        await containers.placed(task)
        if task_id != "ta-never":
            await containers.running(task_id, process_start)
    await containers.finished("ta-done", 0, 200.0, ready_at=102.0)  # ready 2 s after its process started
    live["ta-live"] = Task("ta-live", "rv-1", "fu-1", "ap-1", 99.0, Allocation("local", 0, 0), ready_at=104.5)
    await containers.finished("ta-never", -1, 150.0)  # failed before it ran
    stats = await CallHistory(db, Calls(db, lambda r: api_pb2.FunctionRetryPolicy()), live).stats(["fu-1"], 0, 1000)
    assert (stats.containers, stats.containers_started, stats.containers_failed) == (3, 2, 1)
    assert stats.container_percentiles["Startup time (s)"][5000] == 3.0  # the median of 2 s and 4 s


async def test_container_use_percentiles_come_from_the_samples_taken_in_the_range(tmp_path):
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    containers = Containers(db)
    for task_id, function_id in (("ta-1", "fu-1"), ("ta-2", "fu-1"), ("ta-other", "fu-2")):
        await containers.placed(Task(task_id, "rv-1", function_id, "ap-1", 99.0, Allocation("local", 0, 0)))
        await containers.running(task_id, 100.0)
    every = ("ta-1", "ta-2", "ta-other")
    for second in range(101, 131):  # a reading a second; one sample in SAMPLE_INTERVAL is kept
        cores = {"ta-1": 0.5, "ta-2": 1.5 if second < 116 else 2.5, "ta-other": 8.0}
        load = Load(0.5, cores, dict.fromkeys(every, 2**30), {t: Excess() for t in every}, {"ta-2": 75.0})
        await containers.note_usage(load, float(second))
    await containers.finished("ta-1", 0, 131.0)
    await containers.note_usage(Load(0.5, {"ta-1": 9.0}, {"ta-1": 2**30}, {"ta-1": Excess()}), 140.0)  # too late

    history = CallHistory(db, Calls(db, lambda r: api_pb2.FunctionRetryPolicy()), {})
    stats = await history.stats(["fu-1"], 0, 1000)
    # 6 samples each (seconds 101, 106, ..., 126): ta-1's six at 0.5, ta-2's three at 1.5 and three at 2.5.
    assert stats.container_percentiles["CPU Usage (cores)"] == {5000: 1.0, 9000: 2.5, 9900: 2.5}
    assert stats.container_percentiles["Memory Usage (GiB)"][5000] == 1.0
    assert stats.container_percentiles["GPU Utilization (%)"][5000] == 75.0  # ta-2's alone: ta-1 has no GPU
    assert (await history.stats(["fu-1"], 0, 1000, task_id="ta-1")).container_percentiles["CPU Usage (cores)"] == {
        5000: 0.5,
        9000: 0.5,
        9900: 0.5,
    }
    later = await history.stats(["fu-1"], 116, 1000)  # ta-2's samples at 116, 121 and 126, and ta-1's
    assert later.container_percentiles["CPU Usage (cores)"][9000] == 2.5
    assert "CPU Usage (cores)" not in (await history.stats(["fu-1"], 127, 1000)).container_percentiles

    # Samples are kept for the longest range metrics cover, then forgotten.
    await containers.forget_samples(126.0 + SAMPLES_KEPT)  # those of second 126 are that old, not older
    kept = (await history.stats(["fu-1"], 0, 1000)).container_percentiles["CPU Usage (cores)"]
    assert (kept[5000], kept[9900]) == (1.5, pytest.approx(2.48))  # ta-1's 0.5 and ta-2's 2.5 alone
    await containers.forget_samples(126.5 + SAMPLES_KEPT)
    assert "CPU Usage (cores)" not in (await history.stats(["fu-1"], 0, 1000)).container_percentiles
