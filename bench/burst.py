"""A burst from zero: 1,000 one-second inputs with up to 32 containers.

Reports the time to the first result, the time to the last, and the ideal
(1,000 / 32 seconds plus one cold start, measured first).

    eval "$(shoal env)"; python bench/burst.py [inputs] [containers]
"""

import sys
import time

import modal

app = modal.App("shoal-bench-burst", image=modal.Image.debian_slim())


@app.function(max_containers=32, scaledown_window=2)
def second(i: int) -> int:
    time.sleep(1.0)
    return i


@app.function()
def ping() -> None:
    return None


def main(inputs: int = 1000, containers: int = 32) -> dict:
    with app.run():
        ping.remote()  # the image is built before any timing
    with app.run():
        t0 = time.perf_counter()
        ping.remote()
        cold = time.perf_counter() - t0
    with app.run():
        t0 = time.perf_counter()
        first = None
        for _ in second.map(range(inputs), order_outputs=False):
            first = first or time.perf_counter() - t0
        total = time.perf_counter() - t0
    ideal = inputs / containers + cold
    result = {
        "inputs": inputs,
        "containers": containers,
        "cold_start_s": round(cold, 2),
        "first_result_s": round(first, 2),
        "all_done_s": round(total, 2),
        "ideal_s": round(ideal, 2),
        "ratio_to_ideal": round(total / ideal, 2),
    }
    print(
        f"burst of {inputs} one-second inputs, {containers} containers: first result {result['first_result_s']} s, "
        f"all done {result['all_done_s']} s (ideal {result['ideal_s']} s, {result['ratio_to_ideal']}x)"
    )
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
