"""Calls a deployed app by name, as another program would.

caller.py APP ENV once [N]       prints version() and Greeter(name="x").greet(), of version N if given
caller.py APP ENV by_name        prints version_by_name(): version() as a container looks it up
caller.py APP ENV loop STOPFILE  calls version() back to back while a long call runs, until
                                 STOPFILE exists; one JSON line per call: start, end, result or error
"""

import json
import os
import sys
import time

import modal

app_name, env, mode = sys.argv[1], sys.argv[2], sys.argv[3]
pinned = int(sys.argv[4]) if mode == "once" and len(sys.argv) > 4 else None
version = modal.Function.from_name(app_name, "version", environment_name=env, version=pinned)

if mode == "once":
    greeter = modal.Cls.from_name(app_name, "Greeter", environment_name=env, version=pinned)
    print(f"version: {version.remote()}")
    print(f"greet: {greeter(name='x').greet.remote()}")
elif mode == "by_name":
    print(modal.Function.from_name(app_name, "version_by_name", environment_name=env).remote())
else:
    long_call = modal.Function.from_name(app_name, "slow", environment_name=env).spawn(6.0)
    print(json.dumps({"ready": time.time()}), flush=True)
    while not os.path.exists(sys.argv[4]):
        record = {"start": time.time()}
        try:
            record["result"] = version.remote()
        except Exception as e:
            record["error"] = f"{type(e).__name__}: {e}"
        record["end"] = time.time()
        print(json.dumps(record), flush=True)
    try:
        print(json.dumps({"long": long_call.get(timeout=60)}), flush=True)
    except Exception as e:
        print(json.dumps({"long_error": f"{type(e).__name__}: {e}"}), flush=True)
