"""What a worker meters of each container above its reservation (worker/excess.py), and how its
readings reach the control plane."""

import pytest

from shoal.worker.agent import Load
from shoal.worker.excess import GIB, Excess, ExcessMeter
from shoal.worker.protocol import heartbeat, load_of, pack, unpack


def test_cpu_counts_only_the_cores_used_above_the_reservation_in_each_interval():
    meter = ExcessMeter()
    meter.begin("ta-1", cores=0.5, memory_mb=1024, at=100.0)
    meter.read("ta-1", cpu_seconds=2.0, memory_bytes=None, at=101.0)  # 2 cores for a second: 1.5 above
    meter.read("ta-1", cpu_seconds=2.2, memory_bytes=None, at=102.0)  # 0.2 cores: under, nothing
    meter.read("ta-1", cpu_seconds=3.2, memory_bytes=None, at=103.0)  # 1 core: 0.5 above
    # Seconds under the reservation do not pay for those above it.
    assert meter.totals() == {"ta-1": Excess(cpu_core_seconds=pytest.approx(2.0), memory_gib_seconds=0.0)}


def test_memory_held_above_the_reservation_counts_until_the_next_reading():
    meter = ExcessMeter()
    meter.begin("ta-1", cores=8.0, memory_mb=512, at=0.0)
    meter.read("ta-1", None, 2 * GIB, at=1.0)  # first seen now: the second before is not counted
    meter.read("ta-1", None, 2 * GIB, at=3.0)  # 1.5 GiB above for 2 s
    meter.read("ta-1", None, GIB // 4, at=4.0)  # above for one more second, then under
    meter.read("ta-1", None, None, at=5.0)  # unreadable: nothing added for a second under
    assert meter.totals()["ta-1"].memory_gib_seconds == pytest.approx(4.5)


def test_the_end_adds_the_last_interval_and_forgets_the_container():
    meter = ExcessMeter()
    meter.begin("ta-1", cores=1.0, memory_mb=1024, at=0.0)
    meter.read("ta-1", 1.0, 3 * GIB, at=1.0)
    ended = meter.end("ta-1", cpu_seconds=4.0, at=2.0)  # 3 cores in its last second; memory held to the end
    assert ended == Excess(cpu_core_seconds=pytest.approx(2.0), memory_gib_seconds=pytest.approx(2.0))
    assert meter.totals() == {}
    assert meter.end("ta-1", 5.0, at=3.0) is None
    meter.read("ta-gone", 1.0, GIB, at=3.0)  # one it never began is not metered
    assert meter.totals() == {}


def test_totals_are_copies():
    meter = ExcessMeter()
    meter.begin("ta-1", cores=0.0, memory_mb=0, at=0.0)
    meter.read("ta-1", 1.0, None, at=1.0)
    before = meter.totals()
    meter.read("ta-1", 2.0, None, at=2.0)
    assert before["ta-1"].cpu_core_seconds == pytest.approx(1.0)
    assert meter.totals()["ta-1"].cpu_core_seconds == pytest.approx(2.0)


def test_a_heartbeat_carries_the_readings_as_taken():
    load = Load(0.75, {"ta-1": 1.5}, {"ta-1": 3 * GIB}, {"ta-1": Excess(2.0, 0.5)}, {"ta-1": 87.5})
    beat = unpack(pack(heartbeat(load, cache_bytes=10, cache_limit=20)))
    assert (beat["cache_bytes"], beat["cache_limit"]) == (10, 20)
    assert load_of(beat) == load
    del beat["cpu_busy"], beat["task_cores"], beat["task_memory"], beat["task_excess"], beat["task_gpu_utilization"]
    assert load_of(beat) is None  # a worker of a version that sent no readings
