"""CPU time from /proc, for the benchmarks that say who spent it: one process's, and the
machine's (every process together, containers included)."""

import os

TICK = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float:
    """User and system time of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_seconds() -> float:
    """Time all CPUs spent busy: user, nice, system, irq and softirq."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / TICK
