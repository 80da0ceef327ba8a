"""How busy a worker's CPUs are, and how many cores each of its containers uses: where a
function's own containers keep the CPUs busy, more of them would only share the same cores."""

import time


def _host_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot; waiting on I/O counts as idle."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class CpuMeter:
    def __init__(self) -> None:
        self._host = _host_ticks()
        self._used: dict[str, float] = {}
        self._at = time.monotonic()

    def read(self, used: dict[str, float]) -> tuple[float, dict[str, float]]:
        """The machine's busy fraction since the last reading, and the cores each container used
        since then, from the CPU seconds each has used so far (task id -> seconds); a container
        shows from its second reading on."""
        now, host = time.monotonic(), _host_ticks()
        elapsed = max(now - self._at, 1e-3)
        total = host[1] - self._host[1]
        busy = (host[0] - self._host[0]) / total if total > 0 else 0.0
        cores = {task: (s - self._used[task]) / elapsed for task, s in used.items() if task in self._used}
        self._host, self._used, self._at = host, used, now
        return busy, cores
