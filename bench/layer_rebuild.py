"""Rebuild after changing the last of five layers: only that layer is built.

    eval "$(shoal env)"; python bench/layer_rebuild.py [rounds]

Each round builds a five-layer image on debian_slim whose last step carries a fresh
token (so it is new), then times two builds through the client (`Image.build`):
- rebuild: the same four first steps (cached) and a new last step;
- own: the last step alone on debian_slim (a new layer on the cached base), i.e.
  that layer's own build time, with everything the builder does around one step.
Each build's step does the same work (writes 50 MB and hashes it).
"""

import json
import statistics
import sys
import time
import uuid

import modal

FIRST = [f"head -c 20000000 /dev/urandom > /opt/layer-{i}" for i in range(4)]
WORK = "head -c 50000000 /dev/zero | tee /opt/last | sha256sum > /opt/last.sha && echo {token}"


def timed_build(app: modal.App, image: modal.Image) -> float:
    t0 = time.perf_counter()
    image.build(app)
    return time.perf_counter() - t0


def main(rounds: int = 5) -> dict:
    app = modal.App("shoal-bench-layer-rebuild")
    rebuild, own = [], []
    with app.run():
        base = modal.Image.debian_slim()
        base.build(app)
        timed_build(app, base.run_commands(*FIRST, WORK.format(token="warm-up")))
        for _ in range(rounds):
            rebuild.append(timed_build(app, base.run_commands(*FIRST, WORK.format(token=uuid.uuid4().hex))))
            own.append(timed_build(app, base.run_commands(WORK.format(token=uuid.uuid4().hex))))
    ratio = statistics.median(rebuild) / statistics.median(own)
    return {
        "rounds": rounds,
        "rebuild_last_of_5_s_median": round(statistics.median(rebuild), 3),
        "last_layer_alone_s_median": round(statistics.median(own), 3),
        "ratio": round(ratio, 3),
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
