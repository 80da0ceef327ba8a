"""Servers' requests against the real scheduler: a request waits for a cold start, goes to the
least busy ready container, is refused past max_concurrency, and requests in flight scale the
server up; a container stopping gets SIGTERM once its requests are done."""

import asyncio

import pytest
from modal_proto import api_pb2

from shoal.control.calls import Calls
from shoal.control.errors import FailedPrecondition
from shoal.control.functions import Revision
from shoal.control.placement import Pool, Worker, request_of
from shoal.control.scheduler import Scheduler
from shoal.control.servers import AtCapacity, NoServer, Servers
from shoal.store.database import Database


def server(max_concurrency: int = 0, exit_grace_period: int = 0, **settings) -> Revision:
    fdef = api_pb2.Function(
        is_server=True,
        http_config=api_pb2.HTTPConfig(port=8000, startup_timeout=30, exit_grace_period=exit_grace_period),
        max_concurrent_inputs=max_concurrency,
        autoscaler_settings=api_pb2.AutoscalerSettings(**settings),
    )
    return Revision("rv-s", "fu-s", "ap-1", fdef)


class Link:
    """A worker whose containers' port 8000 is one local listener."""

    def __init__(self, port: int):
        self.port = port
        self.asked: list[str] = []  # the task ids whose ports were looked up

    async def server_address(self, task_id: str, port: int, wait: float) -> tuple[str, int]:
        self.asked.append(task_id)
        return "127.0.0.1", self.port


class Workers:
    def __init__(self, port: int):
        self._link = Link(port)

    def link(self, worker_id: str) -> Link:
        return self._link

    def address(self, worker_id: str) -> str:
        return "127.0.0.1"


@pytest.fixture
async def harness(tmp_path):
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    calls = Calls(db, lambda revision_id: api_pb2.FunctionRetryPolicy())
    pool = Pool()
    pool.add(Worker("w", 16000, 64000, ()))
    terminated: list[tuple[str, bool]] = []

    def place(revision, task_ids, avoid):
        return pool.place_all(request_of(revision.definition), task_ids, avoid=avoid)

    async def launch(task):
        pass

    async def terminate(task, graceful=False):
        terminated.append((task.task_id, graceful))

    async def load(revision_id):
        raise AssertionError("not used")

    scheduler = Scheduler(calls, load, place, launch, terminate, pool.cpu_bound)
    servers = Servers(scheduler, Workers(listener.sockets[0].getsockname()[1]))
    scheduler.server_load = servers.load
    yield scheduler, servers, terminated
    await servers.close()
    listener.close()


async def ready(scheduler: Scheduler, servers: Servers, revision: Revision) -> None:
    """Every container of the revision says @enter is done, and is taken once its port answers."""
    for task in scheduler.live_tasks(revision.revision_id):
        if not task.ready:
            servers.lifecycle_ready(task, revision.definition)
    for _ in range(100):
        if all(t.ready for t in scheduler.live_tasks(revision.revision_id)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("containers not ready")


async def test_a_request_waits_for_a_cold_start(harness):
    scheduler, servers, _ = harness
    revision = server()
    scheduler.add(revision)

    async def one_request() -> str:
        async with servers.request(revision, wait=10) as backend:
            return backend.task.task_id

    asking = asyncio.create_task(one_request())
    await asyncio.sleep(0.05)
    assert servers.load("rv-s")[0] == 1  # waiting: the autoscaler's backlog
    await scheduler.reconcile("rv-s", [])
    (task,) = scheduler.live_tasks("rv-s")
    await ready(scheduler, servers, revision)
    assert await asyncio.wait_for(asking, 10) == task.task_id
    assert task.state == "running"


async def test_requests_go_to_the_least_busy_container_and_past_max_concurrency_are_refused(harness):
    scheduler, servers, _ = harness
    revision = server(max_concurrency=1, min_containers=2)
    scheduler.add(revision)
    for _ in range(2):  # the second starts once the first runs
        await scheduler.reconcile("rv-s", [])
        await ready(scheduler, servers, revision)
    first, second = scheduler.live_tasks("rv-s")
    async with servers.request(revision, 1) as a:
        async with servers.request(revision, 1) as b:
            assert {a.task.task_id, b.task.task_id} == {first.task_id, second.task_id}
            assert servers.load("rv-s") == (0, {first.task_id: 1, second.task_id: 1})
            with pytest.raises(AtCapacity):
                async with servers.request(revision, 1):
                    pass
    taken = []
    for _ in range(4):  # equally idle: in turn
        async with servers.request(revision, 1) as backend:
            taken.append(backend.task.task_id)
    assert taken.count(first.task_id) == taken.count(second.task_id) == 2


async def test_requests_in_flight_scale_a_server_up_and_none_ready_in_time_is_an_answer(harness):
    scheduler, servers, _ = harness
    revision = server(target_concurrency_float=1.5, min_containers=1)
    scheduler.add(revision)
    with pytest.raises(NoServer):  # its container is not up yet
        async with servers.request(revision, 0.1):
            pass
    await scheduler.reconcile("rv-s", [])
    await ready(scheduler, servers, revision)
    async with servers.request(revision, 1), servers.request(revision, 1):
        await scheduler.reconcile("rv-s", [])
        assert len(scheduler.live_tasks("rv-s")) == 2  # 2 in flight, 1.5 per container


async def test_a_container_stopping_gets_sigterm_once_its_requests_are_done(harness):
    scheduler, servers, terminated = harness
    revision = server(exit_grace_period=600, min_containers=1)
    scheduler.add(revision)
    await scheduler.reconcile("rv-s", [])
    await ready(scheduler, servers, revision)
    (task,) = scheduler.live_tasks("rv-s")
    async with servers.request(revision, 1):
        await scheduler.drain(task)
        await scheduler.reconcile("rv-s", [])
        assert terminated == []  # a request is in flight, within the exit_grace_period
    await scheduler.reconcile("rv-s", [])
    assert terminated == [(task.task_id, True)]


async def test_only_a_servers_container_says_it_is_ready_and_saying_it_twice_does_nothing_more(harness):
    scheduler, servers, _ = harness
    revision = server(min_containers=1)
    scheduler.add(revision)
    await scheduler.reconcile("rv-s", [])
    (task,) = scheduler.live_tasks("rv-s")
    with pytest.raises(FailedPrecondition):
        servers.lifecycle_ready(task, api_pb2.Function())  # a function's container
    servers.lifecycle_ready(task, revision.definition)
    servers.lifecycle_ready(task, revision.definition)
    await ready(scheduler, servers, revision)
    servers.lifecycle_ready(task, revision.definition)
    await asyncio.sleep(0.05)
    assert servers.workers.link("w").asked == [task.task_id]  # its port tried once


async def test_requests_waiting_for_a_container_that_fails_to_start_are_told_why(harness):
    scheduler, servers, _ = harness
    revision = server()
    scheduler.add(revision)

    async def one_request() -> None:
        async with servers.request(revision, wait=30):
            pass

    asking = asyncio.create_task(one_request())
    await asyncio.sleep(0.05)
    await scheduler.reconcile("rv-s", [])
    (task,) = scheduler.live_tasks("rv-s")
    task.startup_failure = api_pb2.GenericResult(exception="ModuleNotFoundError: No module named 'x'")
    servers.container_ended(task, 1)
    with pytest.raises(NoServer, match="failed to start: ModuleNotFoundError: No module named 'x'"):
        await asyncio.wait_for(asking, 5)
