"""Accepted work across a crash of the server: spawn slow calls, then (after the server is
killed and started again) wait for them.

python crash.py spawn N      prints the id of each call, spawned from a detached run
python crash.py get ID...    prints each call's result
"""

import sys
import time

import modal

app = modal.App("e2e-crash")


@app.function(max_containers=1)
def slow_square(x: int) -> int:
    time.sleep(3)
    return x * x


if __name__ == "__main__":
    if sys.argv[1] == "spawn":
        with app.run(detach=True):
            for x in range(int(sys.argv[2])):
                print(f"call: {slow_square.spawn(x).object_id}")
    else:
        for call_id in sys.argv[2:]:
            print(f"result: {modal.FunctionCall.from_id(call_id).get(timeout=240)}")
