"""A container that uses more than it reserved (tests/e2e/test_usage.py meters it): two processes
spin for a few seconds while it holds 512 MiB, against a reservation of a quarter core and 128 MiB."""

import os
import resource
import subprocess
import sys

import modal

app = modal.App("e2e-usage-above")

SPIN = "import time\nend = time.monotonic() + {}\nwhile time.monotonic() < end: pass"


@app.function(cpu=0.25, memory=128)
def spin(seconds: float, mib: int) -> dict:
    held = bytearray(mib * 2**20)
    for page in range(0, len(held), 4096):  # pages are only taken when written
        held[page] = 1
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds)]) for _ in range(2)]
    for spinner in spinners:
        spinner.wait()
    spun = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"task_id": os.environ["MODAL_TASK_ID"], "cpu_seconds": spun.ru_utime + spun.ru_stime}


@app.local_entrypoint()
def main():
    print(spin.remote(4.0, 512))
