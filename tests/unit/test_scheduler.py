"""The scheduler against a real call queue and a pool: what it starts, waits for, and stops."""

from modal_proto import api_pb2

from shoal.control.calls import Calls
from shoal.control.functions import Revision
from shoal.control.placement import Gpu, Pool, Worker, request_of
from shoal.control.scheduler import DEFAULT_MAX_CONTAINERS, Scheduler, autoscaling
from shoal.store.database import Database


def gpu_function(revision_id: str, **settings) -> Revision:
    fdef = api_pb2.Function(
        resources=api_pb2.Resources(gpu_config=api_pb2.GPUConfig(gpu_type="H100", count=1)),
        autoscaler_settings=api_pb2.AutoscalerSettings(**settings),
    )
    return Revision(revision_id, f"fu-{revision_id}", "ap-1", fdef)


async def make_scheduler(tmp_path) -> tuple[Scheduler, Calls, Pool]:
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    calls = Calls(db, lambda revision_id: api_pb2.FunctionRetryPolicy())
    pool = Pool()
    pool.add(Worker("w", 4000, 8000, (Gpu(0, "H100", "GPU-0"),)))

    def place(revision, task_ids, avoid):
        return pool.place_all(request_of(revision.definition), task_ids, avoid=avoid)

    async def launch(task):
        scheduler.mark_running(task.task_id)

    async def terminate(task):
        pool.release(task.task_id)
        scheduler.exited(task.task_id)

    async def load(revision_id):
        raise AssertionError("not used")

    scheduler = Scheduler(calls, load, place, launch, terminate, pool.cpu_bound)
    return scheduler, calls, pool


async def test_an_idle_container_gives_its_gpu_to_another_functions_waiting_input(tmp_path):
    scheduler, calls, pool = await make_scheduler(tmp_path)
    first, second = gpu_function("rv-a", scaledown_window=600), gpu_function("rv-b")
    scheduler.add(first)
    scheduler.add(second)

    await calls.create("rv-a", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-a", [])
    (holder,) = scheduler.live_tasks("rv-a")
    holder.ready = True  # as FunctionGetInputs
    (taken,) = await calls.next_inputs("rv-a", holder.task_id, 1, 1, holder.stop)
    await calls.put_output(holder.task_id, taken.input_id, api_pb2.GenericResult(status=1), 0)

    # The only H100 is held by an idle container of rv-a, far from its scaledown window.
    await calls.create("rv-b", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-b", [])
    assert scheduler.live_tasks("rv-b") == [] and holder.state == "draining"
    await scheduler.reconcile("rv-b", [])
    assert holder.state == "draining" and len(scheduler.tasks) == 1  # one container drained, no more

    await scheduler.terminate(holder)  # it exits
    await scheduler.reconcile("rv-b", [])
    (started,) = scheduler.live_tasks("rv-b")
    assert started.allocation.gpus[0].uuid == "GPU-0"
    await calls.flush()


async def test_a_container_running_an_input_keeps_its_gpu(tmp_path):
    scheduler, calls, pool = await make_scheduler(tmp_path)
    scheduler.add(gpu_function("rv-a"))
    scheduler.add(gpu_function("rv-b"))
    await calls.create("rv-a", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-a", [])
    (holder,) = scheduler.live_tasks("rv-a")
    await calls.next_inputs("rv-a", holder.task_id, 1, 1, holder.stop)
    await calls.create("rv-b", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-b", [])
    assert holder.state == "running" and scheduler.live_tasks("rv-b") == []
    await calls.flush()


async def test_a_container_starting_or_between_inputs_keeps_its_gpu(tmp_path):
    scheduler, calls, pool = await make_scheduler(tmp_path)
    scheduler.add(gpu_function("rv-a", scaledown_window=600))
    scheduler.add(gpu_function("rv-b"))
    await calls.create("rv-a", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-a", [])
    (holder,) = scheduler.live_tasks("rv-a")
    await calls.create("rv-b", 0, [(0, api_pb2.FunctionInput())])

    # ContainerHello came, the first FunctionGetInputs not yet: it is in its imports and @enter.
    await scheduler.reconcile("rv-b", [])
    assert holder.state == "running" and not holder.ready

    # Ready, and rv-a's input is still queued: it is about to take it.
    holder.ready = True
    await scheduler.reconcile("rv-b", [])
    assert holder.state == "running"

    await calls.next_inputs("rv-a", holder.task_id, 1, 1, holder.stop)
    await scheduler.reconcile("rv-b", [])
    assert holder.state == "running"  # busy
    await calls.flush()


def test_run_time_settings_override_the_declared_ones_and_none_lifts_the_functions_bound():
    fdef = api_pb2.Function(
        autoscaler_settings=api_pb2.AutoscalerSettings(min_containers=1, max_containers=4, scaledown_window=5)
    )
    assert autoscaling(fdef).max_containers == 4
    raised = autoscaling(fdef, api_pb2.AutoscalerSettings(max_containers=8))
    assert (raised.min_containers, raised.max_containers, raised.scaledown_window) == (1, 8, 5)
    # Function.autoscaler.update(max_containers=None) sends 0: no bound of the function's own
    assert autoscaling(fdef, api_pb2.AutoscalerSettings(max_containers=0)).max_containers == DEFAULT_MAX_CONTAINERS
    assert autoscaling(api_pb2.Function()).max_containers == DEFAULT_MAX_CONTAINERS


async def test_containers_are_provisioned_for_target_inputs_and_take_up_to_max_inputs_while_inputs_wait(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("shoal.control.scheduler.MAX_STARTING", 8)  # not this machine's core count
    scheduler, calls, pool = await make_scheduler(tmp_path)
    fdef = api_pb2.Function(max_concurrent_inputs=4, target_concurrent_inputs=2)
    scheduler.add(Revision("rv-c", "fu-c", "ap-1", fdef))

    await calls.create("rv-c", 0, [(0, api_pb2.FunctionInput())])
    await scheduler.reconcile("rv-c", [])
    (first,) = scheduler.live_tasks("rv-c")  # from zero, one container starts alone
    await calls.next_inputs("rv-c", first.task_id, 1, 0, first.stop)
    assert scheduler.input_slots("rv-c", 2, 4) == 2  # nothing waits: the target

    await calls.create("rv-c", 0, [(i, api_pb2.FunctionInput()) for i in range(1, 7)])
    assert scheduler.input_slots("rv-c", 2, 4) == 4  # inputs wait: up to max_inputs
    running = list(calls.running.values())
    await scheduler.reconcile("rv-c", running)
    # Seven inputs at two per container want four containers (at four per container, two).
    assert len(scheduler.live_tasks("rv-c")) == 4
    stats = scheduler.current_stats(scheduler.revisions["rv-c"])
    assert (stats.backlog, stats.num_total_tasks, stats.num_running_inputs) == (6, 4, 1)
    assert stats.input_headroom == 3 + 3 * 4  # the first runs one of its four inputs, the others none
    await calls.flush()


async def test_a_backlog_adds_no_containers_where_the_functions_own_keep_the_cpus_busy(tmp_path, monkeypatch):
    monkeypatch.setattr("shoal.control.scheduler.MAX_STARTING", 8)
    scheduler, calls, pool = await make_scheduler(tmp_path)
    (worker,) = pool.workers.values()  # 4 cores
    scheduler.add(Revision("rv-cpu", "fu-cpu", "ap-1", api_pb2.Function()))
    await calls.create("rv-cpu", 0, [(i, api_pb2.FunctionInput()) for i in range(100)])
    await scheduler.reconcile("rv-cpu", [])
    (first,) = scheduler.live_tasks("rv-cpu")
    first.ready = True

    # Its one container uses 2 of the 4 cores and the machine is busy: the backlog waits for it.
    worker.cpu_busy, worker.task_cores = 0.97, {first.task_id: 2.0}
    await scheduler.reconcile("rv-cpu", [])
    assert scheduler.live_tasks("rv-cpu") == [first]

    # The cores are busy with something else (a sleeping function's containers use none): it grows.
    worker.task_cores = {first.task_id: 0.2}
    await scheduler.reconcile("rv-cpu", [])
    assert len(scheduler.live_tasks("rv-cpu")) == 9
    # Idle cores: it grows too.
    worker.cpu_busy, worker.task_cores = 0.5, {t.task_id: 0.4 for t in scheduler.live_tasks("rv-cpu")}
    await scheduler.reconcile("rv-cpu", [])
    assert len(scheduler.live_tasks("rv-cpu")) == 17
    await calls.flush()


async def test_min_containers_start_however_busy_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr("shoal.control.scheduler.MAX_STARTING", 8)
    scheduler, calls, pool = await make_scheduler(tmp_path)
    (worker,) = pool.workers.values()
    fdef = api_pb2.Function(autoscaler_settings=api_pb2.AutoscalerSettings(min_containers=3))
    scheduler.add(Revision("rv-min", "fu-min", "ap-1", fdef))
    await scheduler.reconcile("rv-min", [])
    (first,) = scheduler.live_tasks("rv-min")  # from zero, one starts alone
    first.ready = True
    worker.cpu_busy, worker.task_cores = 1.0, {first.task_id: 4.0}
    await scheduler.reconcile("rv-min", [])
    assert len(scheduler.live_tasks("rv-min")) == 3


async def test_a_gpu_function_grows_onto_free_gpus_however_busy_the_cpus(tmp_path):
    scheduler, calls, pool = await make_scheduler(tmp_path)
    pool.remove("w")
    worker = Worker("w", 4000, 8000, (Gpu(0, "H100", "GPU-0"), Gpu(1, "H100", "GPU-1")))
    pool.add(worker)
    scheduler.add(gpu_function("rv-g"))
    await calls.create("rv-g", 0, [(i, api_pb2.FunctionInput()) for i in range(5)])
    await scheduler.reconcile("rv-g", [])
    (first,) = scheduler.live_tasks("rv-g")
    first.ready = True
    worker.cpu_busy, worker.task_cores = 1.0, {first.task_id: 4.0}
    await scheduler.reconcile("rv-g", [])
    assert len(scheduler.live_tasks("rv-g")) == 2  # both GPUs
    await calls.flush()
