"""A worker's CPU readings from /proc: the machine's busy fraction and each container's cores."""

import subprocess
import sys
import time

from shoal.worker.cpu_load import CpuMeter


def test_a_spinning_process_shows_its_cores_and_a_sleeping_one_none():
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sleep = subprocess.Popen(["sleep", "30"])
    try:
        meter = CpuMeter()
        pids = {"ta-spin": spin.pid, "ta-sleep": sleep.pid, "ta-gone": 2**22 + 1}
        busy, cores = meter.read(pids)
        assert cores == {}  # nothing to compare with yet
        time.sleep(1.0)
        busy, cores = meter.read(pids)
        assert 0.0 < busy <= 1.0
        assert set(cores) == {"ta-spin", "ta-sleep"}  # a pid that is gone has no reading
        assert cores["ta-sleep"] < 0.05
        assert cores["ta-spin"] > 0.2  # a whole core when it has one to itself
    finally:
        spin.kill()
        sleep.kill()
