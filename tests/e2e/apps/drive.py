"""Runs one scenario of basics.py through the Python API (`with app.run()`) and
prints what it observed as JSON on the last line."""

import asyncio
import json
import sys
import time

import modal
from basics import (
    Counter,
    add,
    app,
    countdown,
    fail,
    fail_on_multiples_of_three,
    network_interfaces,
    network_interfaces_blocked,
    restricted,
    reverse_bytes,
    sleep_for,
    square,
    succeed_on_third_try,
    sum_of_squares,
    with_helper,
)


def scenario(name: str) -> dict:
    if name == "remote":
        return {"remote": square.remote(4), "local": square.local(5), "aio": asyncio.run(square.remote.aio(6))}
    if name == "map":
        return {
            "ordered": list(square.map(range(20))),
            "unordered": sorted(square.map(range(10), order_outputs=False)),
            "starmap": list(add.starmap([(1, 2), (3, 4)])),
            "for_each": square.for_each(range(3)),
            "exceptions": [repr(r) for r in fail_on_multiples_of_three.map(range(5), return_exceptions=True)],
        }
    if name == "error":
        try:
            fail.remote(7)
        except ValueError as e:
            import traceback

            return {"type": "ValueError", "message": str(e), "traceback": traceback.format_exc()}
        return {"type": None}
    if name == "spawn":
        call = square.spawn(9)
        slow = sleep_for.spawn(2.5)
        try:
            slow.get(timeout=0.2)
            early = "returned"
        except TimeoutError:
            early = "timeout"
        cancelled = sleep_for.spawn(2.9)
        time.sleep(1)
        cancelled.cancel()
        try:
            cancelled.get()
            after_cancel = "returned"
        except Exception as e:
            after_cancel = type(e).__name__
        return {"value": call.get(timeout=60), "early": early, "slow": slow.get(), "after_cancel": after_cancel}
    if name == "generator":
        return {"items": list(countdown.remote_gen(4))}
    if name == "big":
        data = bytes(range(256)) * 20000  # 5 MB: over the inline limit both ways
        return {"ok": reverse_bytes.remote(data) == data[::-1], "size": len(data)}
    if name == "timeout":
        try:
            sleep_for.remote(30)
            return {"type": None}
        except Exception as e:
            return {"type": type(e).__name__, "message": str(e)}
    if name == "retries":
        return {"attempts": succeed_on_third_try.remote(str(time.time()))}
    if name == "mounts":
        return {"double": with_helper.remote(21)}
    if name == "cls":
        counter = Counter(start=10)
        return {"first": counter.add.remote(1), "second": counter.add.remote(2), "default": Counter().add.remote(5)}
    if name == "restricted":
        result = restricted.remote(4, 3_000_000)
        return {"own": result["own"], "other": result["other"], "payload": len(result["payload"])}
    if name == "network":
        return {"open": network_interfaces.remote(), "blocked": network_interfaces_blocked.remote()}
    if name == "call_graph":
        call = sum_of_squares.spawn(3)
        value = call.get()

        def shape(node) -> dict:
            children = sorted((shape(c) for c in node.children), key=json.dumps)
            return {"function": node.function_name, "status": node.status.name, "children": children}

        return {"value": value, "graph": [shape(node) for node in call.get_call_graph()]}
    if name == "call_logs":
        calls = []
        for x in (5, 6):
            calls.append(square.spawn(x))
            calls[-1].get()
            time.sleep(1)  # apart: a container's output just after an input ends may belong to either

        def printed(call) -> str:
            deadline = time.monotonic() + 30  # the log is written just after the output
            while not (text := "".join(e.message for e in call.logs.tail(10))).endswith("\n"):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            return text

        return {"logs": [printed(call) for call in calls]}
    raise SystemExit(f"unknown scenario {name}")


if __name__ == "__main__":
    with modal.enable_output(), app.run():
        result = scenario(sys.argv[1])
    print(json.dumps(result))
