"""The map of `map_throughput.py` bounded at each given `max_containers` in turn (through
`echo.with_options`), in one app: how the rate and the machine's CPU per input depend on the
number of containers. Repeat a bound to map again on its containers, warm.

    eval "$(shoal env)"; python bench/map_containers.py [--inputs N] K [K ...]
"""

import argparse

from bench_app import app, echo
from map_throughput import describe, measure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=5000)
    parser.add_argument("bounds", type=int, nargs="+")
    args = parser.parse_args()
    with app.run():
        for k in args.bounds:
            print(f"max_containers={k}: " + describe(measure(echo.with_options(max_containers=k), args.inputs, {})))


if __name__ == "__main__":
    main()
