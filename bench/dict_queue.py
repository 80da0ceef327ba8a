"""Dict and queue round trips from a client: put and get latency, and how soon a waiting
`Queue.get` in another process has the item a put brings (the producer-to-consumer handoff).

    eval "$(shoal env)"; python bench/dict_queue.py [--n 1000]
"""

import argparse
import multiprocessing
import statistics
import time

import modal


def _ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
    }


def _timed(n: int, op) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - t0)
    return samples


def _consumer(queue_name: str, n: int, out) -> None:
    q = modal.Queue.from_name(queue_name)
    for _ in range(n):
        sent = q.get()
        out.put(time.time() - sent)


def main(n: int) -> dict:
    d = modal.Dict.from_name("bench-dict", create_if_missing=True)
    q = modal.Queue.from_name("bench-queue", create_if_missing=True)
    q.clear(all=True)
    result = {
        "dict_put": _ms(_timed(n, lambda i: d.put(f"k{i}", i))),
        "dict_get": _ms(_timed(n, lambda i: d.get(f"k{i}"))),
        "queue_put": _ms(_timed(n, lambda i: q.put(i))),
        "queue_get": _ms(_timed(n, lambda i: q.get())),
    }
    handoffs = max(1, n // 10)
    out = multiprocessing.get_context("spawn").Queue()
    consumer = multiprocessing.get_context("spawn").Process(target=_consumer, args=("bench-queue", handoffs, out))
    consumer.start()
    time.sleep(3)  # the consumer's client is up and its get is waiting
    delays = []
    for _ in range(handoffs):
        q.put(time.time())
        delays.append(out.get(timeout=60))
        time.sleep(0.02)  # the consumer waits again before the next put
    consumer.join(timeout=60)
    result["handoff"] = _ms(delays)
    d.clear()
    print(
        f"dict put p50 {result['dict_put']['p50_ms']} ms, get {result['dict_get']['p50_ms']} ms; "
        f"queue put {result['queue_put']['p50_ms']} ms, get {result['queue_get']['p50_ms']} ms; "
        f"put to a waiting get in another process p50 {result['handoff']['p50_ms']} ms, "
        f"p99 {result['handoff']['p99_ms']} ms ({n} operations each, {handoffs} handoffs)"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    main(parser.parse_args().n)
