"""Dicts and queues shared between this script and containers: a container takes jobs from a
queue and writes results to a dict; another waits on a queue the script fills later. Partitions
expire their partition_ttl after their last put."""

import json
import queue
import sys
import time

import modal

app = modal.App("e2e-dicts-queues")
jobs = modal.Queue.from_name("e2e-jobs", create_if_missing=True)
results = modal.Dict.from_name("e2e-results", create_if_missing=True)


@app.function()
def worker() -> int:
    done = 0
    while True:
        try:
            job = jobs.get(timeout=2)
        except queue.Empty:
            return done
        results[job["id"]] = {"square": job["x"] ** 2}
        done += 1


@app.function()
def wait_for(partition: str) -> list:
    """Blocks until the script puts something in the partition."""
    return jobs.get_many(10, timeout=60, partition=partition)


def main() -> dict:
    jobs.clear(all=True)
    results.clear()
    out = {}
    with app.run():
        jobs.put_many([{"id": f"job-{i}", "x": i} for i in range(20)])
        out["done"] = worker.remote()
        out["results"] = {k: v["square"] for k, v in results.items()}
        out["len"] = results.len()
        waiting = wait_for.spawn("later")
        time.sleep(2)
        jobs.put_many(["a", "b"], partition="later")
        out["waited"] = waiting.get(timeout=60)
        out["left"] = jobs.len(total=True)
    with modal.Dict.ephemeral() as d, modal.Queue.ephemeral() as q:
        d["k"] = [1, 2]
        out["put_if_absent"] = [d.put("k", 3, skip_if_exists=True), d.put("n", 4, skip_if_exists=True)]
        out["ephemeral_dict"] = sorted(d.items())
        q.put_many([1, 2, 3])
        out["iterated"] = list(q.iterate())
        out["popped"] = [d.pop("k"), q.get(), q.len()]
    return out


def expiry() -> dict:
    """Partitions past their partition_ttl, as this script sees them; `modal queue peek` sees another
    queue's, left for it."""
    peeked = modal.Queue.from_name("e2e-peeked-queue", create_if_missing=True)
    peeked.clear(all=True)
    with modal.Queue.ephemeral() as q:
        for each in (q, peeked):
            each.put(1, partition="p", partition_ttl=1)
            each.put_many([2, 3], partition="p", partition_ttl=1)
            each.put(4, partition="kept")  # the default TTL: a day
        time.sleep(2)
        return {
            "len": q.len(partition="p"),
            "get": q.get(partition="p", block=False),
            "iterated": list(q.iterate(partition="p")),
            "total": q.len(total=True),
            "kept": list(q.iterate(partition="kept")),
        }


def keep() -> None:
    """An entry and an item for a restart to keep."""
    modal.Dict.from_name("e2e-kept-dict", create_if_missing=True)["k"] = "v"
    modal.Queue.from_name("e2e-kept-queue", create_if_missing=True).put(7)


if __name__ == "__main__":
    print(json.dumps({"main": main, "expiry": expiry, "keep": keep}[sys.argv[1]]()))
