"""Metering checks shared by the e2e suites: container lifetimes as the kernel measures them,
and what a container that uses more than it reserved is billed."""

import ast
import json
import os
import select
import threading
import time

from conftest import Shoal


def _first_of_its_pid_namespace(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
    return len(nspid) > 1 and nspid[-1] == "1"


def _task_id(pid: int) -> str | None:
    with open(f"/proc/{pid}/environ", "rb") as f:
        env = dict(v.partition(b"=")[::2] for v in f.read().split(b"\0"))
    return env[b"MODAL_TASK_ID"].decode() if b"MODAL_TASK_ID" in env else None


def _start_time(pid: int) -> float:
    """When the process started (wall clock), as the kernel recorded it."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = int(f.read().rpartition(")")[2].split()[19])  # field 22: start, in clock ticks since boot
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - age


class ContainerWatch(threading.Thread):
    """Start and exit (wall-clock seconds) of every container process on this host, by task id."""

    def __init__(self):
        super().__init__(daemon=True)
        self.started: dict[str, float] = {}
        self.exited: dict[str, float] = {}
        self.changed = threading.Condition()
        self.closing = threading.Event()

    def run(self) -> None:
        poller, watched, settled = select.poll(), {}, set()
        while not self.closing.is_set():
            for pid in {int(p) for p in os.listdir("/proc") if p.isdigit()} - settled:
                try:
                    if not _first_of_its_pid_namespace(pid):
                        settled.add(pid)  # and it never will be: host processes are left alone from now on
                    elif task_id := _task_id(pid):  # else not a task, or still `runc init`: looked at again
                        settled.add(pid)
                        fd = os.pidfd_open(pid)  # before reading its start: the pid cannot be reused while held
                        watched[fd] = task_id
                        poller.register(fd, select.POLLIN)
                        with self.changed:
                            self.started[task_id] = _start_time(pid)
                except (FileNotFoundError, ProcessLookupError):
                    settled.add(pid)  # gone
            # A pidfd becomes readable the moment its process exits.
            for fd, _ in poller.poll(100):
                ended = time.time()
                poller.unregister(fd)
                os.close(fd)
                with self.changed:
                    self.exited[watched.pop(fd)] = ended
                    self.changed.notify_all()

    def lifetime(self, task_id: str, timeout: float = 300) -> float:
        with self.changed:
            assert self.changed.wait_for(lambda: task_id in self.exited, timeout), f"{task_id} has not exited"
            return self.exited[task_id] - self.started[task_id]

    def __enter__(self) -> "ContainerWatch":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.join()


def wait_unlisted(shoal: Shoal, app_name: str) -> None:
    """Until the app's containers are no longer listed: their exits are in shoal's records."""
    deadline = time.monotonic() + 120
    while any(r["app_name"] == app_name for r in json.loads(shoal.modal("container", "list", "--json").stdout)):
        assert time.monotonic() < deadline, "containers still listed after they exited"
        time.sleep(0.5)


def check_billed_above_the_reservation(shoal: Shoal) -> None:
    """Runs tests/e2e/apps/usage_above.py: as Modal bills, CPU and memory count at the greater of
    the reservation and the actual use, second by second."""
    with ContainerWatch() as watch:
        out = shoal.modal("run", "usage_above.py").stdout
        spun = ast.literal_eval(next(line for line in out.splitlines() if line.startswith("{")))
        lifetime = watch.lifetime(spun["task_id"])
    wait_unlisted(shoal, "e2e-usage-above")

    report = json.loads(shoal.shoal("usage", "--by", "app", "--json").stdout)
    [row] = [r for r in report["rows"] if r["key"] == "e2e-usage-above"]
    print(f"lifetime {lifetime:.2f} s, spinners {spun['cpu_seconds']:.2f} CPU s, metered {row}")
    # Two spinners for 4 s against a quarter core: the kernel's count of their CPU time is billed
    # (each second at the greater of the two), and little more than it and the reservation.
    reserved = 0.25 * lifetime
    assert spun["cpu_seconds"] > 2 * reserved
    assert spun["cpu_seconds"] <= row["cpu_core_seconds"] <= reserved + spun["cpu_seconds"] + 1.5
    # 512 MiB held for at least the 4 s of spinning against 128 MiB: all but the second before its
    # first reading, and never more than held for its whole life.
    held = 128 / 1024 * lifetime + (512 - 128) / 1024 * (4 - 1)
    assert held <= row["memory_gib_seconds"] <= (512 + 128) / 1024 * lifetime
