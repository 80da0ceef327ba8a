"""Accepted work across a control-plane restart: spawn a slow call, then (after the restart) wait for it.

python spawn_slow.py spawn        prints the call id
python spawn_slow.py get CALL_ID  prints its result
"""

import sys

import modal
from workers import app, slow_h100

if __name__ == "__main__":
    if sys.argv[1] == "spawn":
        with app.run(detach=True):
            print(f"call: {slow_h100.spawn(8.0).object_id}")
    else:
        print(f"result: {modal.FunctionCall.from_id(sys.argv[2]).get(timeout=240)}")
