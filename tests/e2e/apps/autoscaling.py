"""Autoscaler knobs: @modal.concurrent, @modal.batched, buffer_containers, run-time autoscaler settings.

python autoscaling.py   prints one line per check
"""

import os
import threading
import time

import modal

app = modal.App("e2e-autoscaling")


@app.function(scaledown_window=2)
@modal.concurrent(max_inputs=3)
def shared(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["MODAL_TASK_ID"]


@app.function(scaledown_window=2)
@modal.batched(max_batch_size=4, wait_ms=1000)
def batch(xs: list[int]) -> list[int]:
    return [len(xs)] * len(xs)


@app.function(buffer_containers=1, scaledown_window=2)
def buffered(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["MODAL_TASK_ID"]


running_here = 0
counter = threading.Lock()


@app.function(max_containers=1, scaledown_window=2)
@modal.concurrent(max_inputs=4, target_inputs=2)
def bursting(seconds: float) -> int:
    """How many inputs this container runs at once, seen at the end of this one."""
    global running_here
    with counter:
        running_here += 1
    time.sleep(seconds)
    with counter:
        seen, running_here = running_here, running_here - 1
    return seen


@app.function(scaledown_window=2)
def idle() -> str:
    return os.environ["MODAL_TASK_ID"]


def wait_until(predicate, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


if __name__ == "__main__":
    from container_count import containers_of  # local only: containers do not have this module

    with app.run():
        calls = [shared.spawn(2.0) for _ in range(3)]
        print(f"concurrent containers: {len({c.get() for c in calls})}")

        print(f"batch sizes: {sorted(set(batch.map(range(4))))}")

        # target_inputs=2 below max_inputs=4, and no second container allowed: the one there
        # takes up to 4 at once while inputs wait.
        bursts = [bursting.spawn(4.0) for _ in range(6)]

        def bursting_stats():
            s = bursting.get_current_stats()
            return (s.backlog, s.num_total_runners, s.num_running_inputs, s.input_headroom)

        print(f"stats while one container runs 4 and 2 wait: {wait_until(lambda: bursting_stats() == (2, 1, 4, 0))}")
        print(f"inputs at once in one container: {max(c.get() for c in bursts)}")

        running = buffered.spawn(6.0)
        print(f"buffer kept beside the busy one: {wait_until(lambda: containers_of(app.app_id) >= 2)}")
        running.get()

        # Nothing calls idle(): only the run-time settings bring a container up, and take it away.
        assert wait_until(lambda: containers_of(app.app_id) == 0)
        print(f"declared settings: {idle.autoscaler.settings()}")
        idle.autoscaler.update(min_containers=1, max_containers=3)
        print(f"min_containers=1 at run time: {wait_until(lambda: containers_of(app.app_id) == 1)}")
        print(f"settings at run time: {idle.autoscaler.settings()}")
        idle.update_autoscaler(min_containers=0)  # the older spelling
        print(f"min_containers=0 at run time: {wait_until(lambda: containers_of(app.app_id) == 0)}")
