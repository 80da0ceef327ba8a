"""A worker's CPU readings: the machine's busy fraction and each container's cores."""

import time

from shoal.worker.cpu_load import CpuMeter


def test_cores_per_container_between_two_readings():
    meter = CpuMeter()
    busy, cores = meter.read({"ta-1": 5.0, "ta-2": 1.0})
    assert 0.0 <= busy <= 1.0
    assert cores == {}  # nothing to compare with yet
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.2:  # keep a core busy meanwhile
        pass
    busy, cores = meter.read({"ta-1": 5.0 + (time.monotonic() - t0), "ta-2": 1.0, "ta-3": 7.0})
    assert 0.0 < busy <= 1.0
    assert set(cores) == {"ta-1", "ta-2"}  # ta-3 shows from its next reading; a gone one drops out
    assert cores["ta-2"] == 0.0
    assert 0.5 < cores["ta-1"] <= 1.0  # it used the whole interval's time on one core
