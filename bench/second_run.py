"""Wall time of a second `modal run examples/hello.py`, and how many layers it built.

eval "$(shoal env)"; python bench/second_run.py
"""

import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODAL = os.path.join(os.path.dirname(sys.executable), "modal")


def run() -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([MODAL, "run", "examples/hello.py"], cwd=REPO, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, proc.stdout + proc.stderr


def main() -> dict:
    run()  # the first run may build
    elapsed, output = run()
    built = output.count("=> RUN") + output.count("=> COPY")
    result = {"wall_s": round(elapsed, 2), "layers_built": built}
    print(f"second `modal run examples/hello.py`: {result['wall_s']} s wall, {built} layers built")
    return result


if __name__ == "__main__":
    main()
