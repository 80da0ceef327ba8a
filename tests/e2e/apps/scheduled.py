"""A scheduled function: `tick` runs every 2 s once deployed and notes each run in a volume, so
a test can count them (`python scheduled.py count`)."""

import sys
import time

import modal

app = modal.App("e2e-scheduled")
runs = modal.Volume.from_name("e2e-schedule-runs", create_if_missing=True)


@app.function(schedule=modal.Period(seconds=2), volumes={"/runs": runs})
def tick() -> None:
    with open("/runs/ticks.txt", "a") as f:
        f.write(f"{time.time()}\n")
    print("tick")


if __name__ == "__main__" and sys.argv[1:] == ["count"]:
    try:
        print(len(b"".join(runs.read_file("ticks.txt")).splitlines()))
    except FileNotFoundError:
        print(0)
