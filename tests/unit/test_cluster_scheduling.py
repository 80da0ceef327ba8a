"""Clusters against the scheduler, a real call queue and a pool: started whole, fed the same
inputs, answered by their lead, and stopped as one."""

import asyncio

import pytest
from modal_proto import api_pb2

from shoal.control.calls import Calls
from shoal.control.clusters import Clusters, ipv6_form, machine_ip
from shoal.control.errors import FailedPrecondition
from shoal.control.functions import Revision
from shoal.control.placement import Gpu, Pool, Worker, request_of
from shoal.control.scheduler import Scheduler
from shoal.store.database import Database

FAILURE = api_pb2.GenericResult.GENERIC_STATUS_FAILURE
SUCCESS = api_pb2.GenericResult.GENERIC_STATUS_SUCCESS


def clustered(revision_id: str, size: int, gpu: str = "") -> Revision:
    fdef = api_pb2.Function(
        function_name="train",
        _experimental_group_size=size,
        resources=api_pb2.Resources(gpu_config=api_pb2.GPUConfig(gpu_type=gpu, count=1) if gpu else None),
    )
    return Revision(revision_id, f"fu-{revision_id}", "ap-1", fdef)


@pytest.fixture
async def platform(tmp_path):
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    calls = Calls(db, lambda revision_id: api_pb2.FunctionRetryPolicy())
    pool = Pool()
    for name in ("a", "b"):
        pool.add(Worker(name, 4000, 8000, (Gpu(0, "H100", f"GPU-{name}"),)))
    stopped = []

    def place(revision, task_ids, avoid):
        return pool.place_all(request_of(revision.definition), task_ids, avoid=avoid)

    async def launch(task):
        scheduler.mark_running(task.task_id)
        if task.cluster:
            task.cluster.addresses[task.rank] = f"10.0.0.{task.rank + 1}"

    async def terminate(task):
        stopped.append(task.task_id)
        pool.release(task.task_id)
        scheduler.exited(task.task_id)
        await scheduler.break_cluster(task, -9)

    async def load(revision_id):
        raise AssertionError("not used")

    scheduler = Scheduler(calls, load, place, launch, terminate, pool.cpu_bound)
    yield scheduler, calls, Clusters(calls, scheduler), stopped
    await calls.flush()
    await db.close()


async def test_a_backlog_starts_a_whole_cluster_and_its_ranks_meet(platform):
    scheduler, calls, clusters, _ = platform
    scheduler.add(clustered("rv-1", 2, gpu="H100"))
    await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-1", [])
    lead, other = sorted(scheduler.live_tasks("rv-1"), key=lambda t: t.rank)
    assert lead.cluster is other.cluster and (lead.rank, other.rank) == (0, 1)
    assert {lead.allocation.worker_id, other.allocation.worker_id} == {"a", "b"}  # one H100 each

    hello = asyncio.create_task(clusters.hello(other))
    await asyncio.sleep(0.05)
    assert not hello.done()  # it waits for every rank
    lead_hello = await clusters.hello(lead)
    other_hello = await hello
    assert (lead_hello.cluster_rank, other_hello.cluster_rank) == (0, 1)
    assert list(other_hello.container_ips) == ["::ffff:10.0.0.1", "::ffff:10.0.0.2"]
    assert list(other_hello.container_ipv4_ips) == ["10.0.0.1", "10.0.0.2"]
    assert clusters.get(lead.cluster.cluster_id).stats().task_ids == [lead.task_id, other.task_id]


async def test_every_rank_runs_the_leads_inputs_and_the_lead_answers(platform):
    scheduler, calls, clusters, _ = platform
    scheduler.add(clustered("rv-1", 3))
    call, _ = await calls.create("rv-1", 0, [(i, api_pb2.FunctionInput(args=bytes([i]))) for i in range(2)])
    await scheduler.reconcile("rv-1", [])
    lead, one, two = sorted(scheduler.live_tasks("rv-1"), key=lambda t: t.rank)

    waiting = asyncio.create_task(clusters.next_inputs(one, 1, 5, 0))
    first = await clusters.next_inputs(lead, 1, 5, 0)
    assert await waiting == first
    second = await clusters.next_inputs(lead, 1, 5, 0)
    assert await clusters.next_inputs(two, 5, 5, 0) == first + second  # a rank behind catches up
    assert await clusters.next_inputs(one, 1, 5, 0) == second
    assert await clusters.next_inputs(one, 1, 0.05, 0) == []

    ok = api_pb2.GenericResult(status=SUCCESS)
    await clusters.put_output(one, first[0].input_id, api_pb2.GenericResult(status=SUCCESS, exception="ignored"), 0)
    assert call.unfinished  # only the lead's output is the call's
    await clusters.put_output(lead, first[0].input_id, ok, 0)
    await clusters.put_output(lead, second[0].input_id, ok, 0)
    assert not call.unfinished
    assert lead.cluster.inputs == []  # read by every rank: dropped


async def test_a_rank_that_fails_fails_the_input_and_stops_its_cluster(platform):
    scheduler, calls, clusters, stopped = platform
    scheduler.add(clustered("rv-1", 2))
    call, _ = await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-1", [])
    lead, other = sorted(scheduler.live_tasks("rv-1"), key=lambda t: t.rank)
    (taken,) = await clusters.next_inputs(lead, 1, 5, 0)
    await clusters.next_inputs(other, 1, 5, 0)

    await clusters.put_output(other, taken.input_id, api_pb2.GenericResult(status=FAILURE, exception="boom"), 0)
    assert call.outputs[0].result.exception == "boom"
    assert sorted(stopped) == sorted([lead.task_id, other.task_id])  # each stopped once


async def test_when_one_container_ends_the_rest_of_its_cluster_stop(platform):
    scheduler, calls, clusters, stopped = platform
    scheduler.add(clustered("rv-1", 2))
    await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-1", [])
    lead, other = sorted(scheduler.live_tasks("rv-1"), key=lambda t: t.rank)
    waiting = asyncio.create_task(clusters.hello(lead))

    scheduler.exited(other.task_id)  # it crashed
    await scheduler.break_cluster(other, 1)
    assert stopped == [lead.task_id]
    assert "rank 1 of cluster" in lead.kill_message and "exited with code 1" in lead.kill_message
    with pytest.raises(FailedPrecondition, match="ended before all its containers started"):
        await waiting


async def test_a_cluster_is_one_unit_of_the_autoscaler(platform):
    scheduler, calls, clusters, _ = platform
    scheduler.add(clustered("rv-1", 2))
    await calls.create("rv-1", 0, [(i, api_pb2.FunctionInput()) for i in range(3)])
    for _ in range(3):
        await scheduler.reconcile("rv-1", [])
    live = scheduler.live_tasks("rv-1")
    assert len(live) == 6 and len({t.cluster.cluster_id for t in live}) == 3  # a cluster per waiting input


def test_addresses_in_ipv6_form():
    assert ipv6_form("192.0.2.7") == "::ffff:192.0.2.7"
    assert ipv6_form("2001:db8::1") == "2001:db8::1"
    assert machine_ip("127.0.0.1") == "127.0.0.1"
    assert machine_ip("localhost") in ("127.0.0.1", "::1")


async def test_a_waiting_cluster_reclaims_as_many_idle_gpus_as_it_needs_at_once(platform):
    scheduler, calls, clusters, _ = platform
    h100 = api_pb2.Resources(gpu_config=api_pb2.GPUConfig(gpu_type="H100", count=1))
    keeps_warm = api_pb2.AutoscalerSettings(scaledown_window=600)
    other = Revision("rv-o", "fu-o", "ap-2", api_pb2.Function(resources=h100, autoscaler_settings=keeps_warm))
    scheduler.add(other)
    await calls.create("rv-o", 0, [(i, api_pb2.FunctionInput()) for i in range(2)])
    for _ in range(2):
        await scheduler.reconcile("rv-o", [])
    holders = scheduler.live_tasks("rv-o")
    for holder in holders:  # each runs an input, then idles holding its H100
        holder.ready = True
        (taken,) = await calls.next_inputs("rv-o", holder.task_id, 1, 1, holder.stop)
        await calls.put_output(holder.task_id, taken.input_id, api_pb2.GenericResult(status=SUCCESS), 0)
    assert len(holders) == 2

    scheduler.add(clustered("rv-1", 2, gpu="H100"))
    await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-1", [])
    assert [h.state for h in holders] == ["draining", "draining"]  # both H100s, in one pass
