"""Placement: feasibility per constraint, then ranking, over a pool of workers."""

import pytest
from modal_proto import api_pb2

from shoal.control.placement import Gpu, GpuChoice, Pool, Request, Unsatisfiable, Worker, request_of


def gpus(*types: str) -> tuple[Gpu, ...]:
    return tuple(Gpu(i, t, f"GPU-{i}") for i, t in enumerate(types))


def pool(*workers: Worker) -> Pool:
    p = Pool()
    for w in workers:
        p.add(w)
    return p


def test_gpu_request_forms():
    fdef = api_pb2.Function(resources=api_pb2.Resources(gpu_config=api_pb2.GPUConfig(gpu_type="H100", count=2)))
    assert request_of(fdef).gpus == (GpuChoice("H100", 2),)
    assert request_of(fdef, ("B200:1", "A100-80GB:1")).gpus == (GpuChoice("B200", 1), GpuChoice("A100-80GB", 1))
    assert request_of(api_pb2.Function()).gpus == ()
    assert GpuChoice("A100", 1).accepts("A100-80GB") and GpuChoice("A100", 1).accepts("A100-40GB")
    assert GpuChoice("ANY", 1).accepts("T4") and not GpuChoice("H100", 1).accepts("H200")


def test_gpus_are_reserved_until_released():
    p = pool(Worker("w", 8000, 32000, gpus("H100", "H100")))
    first = p.place(Request(gpus=(GpuChoice("H100", 1),)), "ta-1")
    second = p.place(Request(gpus=(GpuChoice("H100", 1),)), "ta-2")
    assert {first.gpus[0].index, second.gpus[0].index} == {0, 1}
    assert p.place(Request(gpus=(GpuChoice("H100", 1),)), "ta-3") is None  # busy, not impossible: it waits
    p.release("ta-1")
    assert p.place(Request(gpus=(GpuChoice("H100", 1),)), "ta-3").gpus == first.gpus


def test_fallbacks_in_order_of_preference():
    p = pool(Worker("w", 8000, 32000, gpus("A10G", "H100")))
    choice = (GpuChoice("B200", 1), GpuChoice("A10G", 1), GpuChoice("H100", 1))
    assert p.place(Request(gpus=choice), "ta-1").gpus[0].gpu_type == "A10G"
    assert p.place(Request(gpus=choice), "ta-2").gpus[0].gpu_type == "H100"


def test_unsatisfiable_says_what_was_asked_and_what_the_pool_has():
    p = pool(Worker("w", 2000, 4000, gpus("H100")))
    with pytest.raises(Unsatisfiable, match=r"gpu=H100:2: the pool has 1 worker with 2 CPUs, 4000 MiB, H100:1"):
        p.place(Request(gpus=(GpuChoice("H100", 2),)), "ta-1")
    with pytest.raises(Unsatisfiable, match="cpu=4"):
        p.place(Request(milli_cpu=4000), "ta-1")


def test_a_function_with_volumes_runs_only_where_they_can_be_mounted():
    fdef = api_pb2.Function(volume_mounts=[api_pb2.VolumeMount(volume_id="vo-1", mount_path="/data")])
    assert request_of(fdef).volumes and not request_of(api_pb2.Function()).volumes
    p = pool(Worker("joined", 16000, 64000), Worker("local", 2000, 4000, volumes=True))
    assert p.place(request_of(fdef), "ta-1").worker_id == "local"
    with pytest.raises(Unsatisfiable, match=r"volumes \(only the control plane's own worker and workers joined"):
        pool(Worker("joined", 16000, 64000)).place(request_of(fdef), "ta-2")


def test_explicit_cpu_and_memory_requests_are_reservations():
    p = pool(Worker("w", 2000, 4000))
    assert p.place(Request(milli_cpu=1500), "ta-1")
    assert p.place(Request(milli_cpu=1000), "ta-2") is None
    assert p.place(Request(), "ta-3")  # the defaults reserve nothing


def test_ranking_packs_gpus_and_keeps_cpu_work_off_gpu_machines():
    p = pool(Worker("big", 8000, 32000, gpus("H100", "H100")), Worker("small", 8000, 32000, gpus("H100")))
    p.add(Worker("cpu", 8000, 32000))
    assert p.place(Request(gpus=(GpuChoice("H100", 1),)), "ta-1").worker_id == "small"  # keeps big whole
    assert p.place(Request(), "ta-2").worker_id == "cpu"


def test_ranking_prefers_a_worker_that_ran_the_image():
    p = pool(Worker("a", 8000, 32000), Worker("b", 8000, 32000))
    p.workers["b"].images.add("im-1")
    assert p.place(Request(), "ta-1", image_id="im-1").worker_id == "b"
    assert p.place(Request(), "ta-2", image_id="im-2").worker_id == "a"  # no worker has it: a tie, broken by name


def test_cpu_bound_workers_and_placing_around_them():
    p = pool(Worker("a", 2000, 8000), Worker("b", 8000, 8000))
    a, b = p.workers["a"], p.workers["b"]
    a.cpu_busy, a.task_cores = 0.95, {"ta-1": 0.4, "ta-2": 0.5, "ta-other": 1.0}
    b.cpu_busy, b.task_cores = 0.95, {"ta-3": 1.0}
    # On a, ta-1 and ta-2 use 0.9 of its 2 cores, ta-1 alone 0.4; on b, ta-3 uses 1 of 8.
    assert p.cpu_bound(["ta-1", "ta-2", "ta-3"]) == {"a"}
    assert p.cpu_bound(["ta-1"]) == set()
    a.cpu_busy = 0.5  # cores to spare
    assert p.cpu_bound(["ta-1", "ta-2"]) == set()

    request = request_of(api_pb2.Function())
    assert p.place(request, "ta-4", avoid={"a"}).worker_id == "b"
    assert p.place(request, "ta-5", avoid={"a", "b"}) is None


def test_a_cluster_is_placed_whole_or_not_at_all():
    p = pool(
        Worker("a", 8000, 16000, (Gpu(0, "H100", "GPU-a0"),)), Worker("b", 8000, 16000, (Gpu(0, "H100", "GPU-b0"),))
    )
    h100 = Request(gpus=(GpuChoice("H100", 1),))
    assert p.place(h100, "ta-0")
    # one H100 free, two asked: nothing is held for the cluster meanwhile
    assert p.place_all(h100, ["ta-1", "ta-2"]) is None
    assert sum(w.free_gpu_count() for w in p.workers.values()) == 1
    p.release("ta-0")
    placed = p.place_all(h100, ["ta-1", "ta-2"])
    assert sorted(a.worker_id for a in placed) == ["a", "b"]


def test_a_cluster_the_pool_could_never_hold_is_unsatisfiable():
    p = pool(Worker("a", 8000, 16000, (Gpu(0, "H100", "GPU-a0"), Gpu(1, "H100", "GPU-a1"))))
    with pytest.raises(Unsatisfiable, match="a cluster of 3 containers, each with gpu=H100: the pool has 1 worker"):
        p.place_all(Request(gpus=(GpuChoice("H100", 1),)), ["ta-1", "ta-2", "ta-3"])
    assert p.workers["a"].free_gpu_count() == 2
    assert len(p.place_all(Request(milli_cpu=1000), [f"ta-{i}" for i in range(8)])) == 8
    assert len(p.place_all(Request(), [f"ta-x{i}" for i in range(50)])) == 50  # reserving nothing, any number fits
