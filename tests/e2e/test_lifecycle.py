"""Containers come and go: idle ones scale down, greedy ones are killed, none outlive shoal;
a detached run's app stops once its calls are done."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import APPS, running_shoal

from shoal.cli.state import alive


def tasks_of(shoal, description: str) -> int | None:
    apps = json.loads(shoal.modal("app", "list", "--json").stdout)
    running = [a for a in apps if a["description"] == description and a["state"] != "stopped"]
    return int(running[0]["tasks"]) if running else None


def test_idle_container_scales_down_after_its_window(shoal):
    proc = subprocess.Popen(
        [sys.executable, "lifecycle.py", "scaledown", "40"],
        env=shoal.client_env(),
        cwd=APPS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            count = tasks_of(shoal, "e2e-lifecycle")
            if count is not None and (not seen or seen[-1] != count):
                seen.append(count)
            if seen[-2:] == [1, 0]:
                break
            time.sleep(0.5)
        assert seen[-2:] == [1, 0], f"task counts seen: {seen}"
    finally:
        proc.kill()


def test_a_detached_run_finishes_the_calls_it_spawned_then_stops(shoal):
    out = shoal.modal("run", "--detach", "detached.py").stdout
    call_id = re.search(r"spawned: (fc-\w+)", out).group(1)
    assert "the spawned call is done" in out  # its logs stream until the app is done

    def state() -> list[str]:
        apps = json.loads(shoal.modal("app", "list", "--json").stdout)
        return [a["state"] for a in apps if a["description"] == "e2e-detached"]

    deadline = time.monotonic() + 60
    while state() != ["stopped"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert state() == ["stopped"]
    got = shoal.python("-c", f"import modal; print(modal.FunctionCall.from_id('{call_id}').get(timeout=60))")
    assert got.stdout.strip() == "done"  # the call finished before the app stopped


def test_a_detached_app_whose_entrypoint_returned_still_stops_after_a_restart(shoal):
    run = shoal.spawn_modal("run", "--detach", "detached.py", "--seconds", "15")
    out = ""
    while "spawned:" not in out and run.poll() is None:
        out += run.stdout.readline()
    app_id = re.search(r"/apps/(ap-\w+)", out).group(1)
    call_id = re.search(r"spawned: (fc-\w+)", out).group(1)
    time.sleep(1)  # the client tells the server its entrypoint returned, then only streams logs
    run.kill()
    run.communicate()
    shoal.down()  # the spawned call's container goes with it; the call runs again after the restart
    shoal.up()

    def state() -> list[str]:
        return [a["state"] for a in json.loads(shoal.modal("app", "list", "--json").stdout) if a["app_id"] == app_id]

    got = shoal.python("-c", f"import modal; print(modal.FunctionCall.from_id('{call_id}').get(timeout=120))")
    assert got.stdout.strip() == "done"
    deadline = time.monotonic() + 60
    while state() != ["stopped"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert state() == ["stopped"]


def test_out_of_memory_is_reported(shoal):
    proc = shoal.python("lifecycle.py", "oom")
    assert "oom: InternalFailure" in proc.stdout
    assert "out of memory" in proc.stdout


def test_thread_pool_variables_follow_the_cpu_reservation(shoal):
    lines = dict(line.split(": ", 1) for line in shoal.python("lifecycle.py", "threads").stdout.splitlines())
    assert lines["threads_by_default"] == "1 1 1"  # 0.125 cores
    assert lines["threads_of_a_core_and_a_half"] == "2 2 2"
    assert lines["threads_the_image_sets"] == "7 2 2"


def test_a_container_slower_to_start_than_its_startup_timeout_fails_the_call(shoal):
    proc = shoal.python("lifecycle.py", "slow_start")
    assert "slow_start: FunctionTimeoutError" in proc.stdout, proc.stdout
    assert "did not start within 3 seconds" in proc.stdout


def test_restart_keeps_state_and_stops_containers(shoal):
    shoal.modal("run", "images_app.py")  # the image is built (or found) before the restart
    before = {a["app_id"] for a in json.loads(shoal.modal("app", "list", "--json").stdout)}
    shoal.down()
    runc = subprocess.run(
        ["runc", "--root", str(shoal.home / "runtime" / "runc"), "list", "-q"], capture_output=True, text=True
    )
    assert runc.stdout.strip() == ""
    shoal.up()
    after = {a["app_id"] for a in json.loads(shoal.modal("app", "list", "--json").stdout)}
    assert before <= after  # the same token still works and the apps are still there
    proc = shoal.modal("run", "images_app.py")
    assert "inspect:" in proc.stdout and "=> RUN" not in proc.stdout + proc.stderr


def test_accepted_work_survives_a_crash_of_the_server():
    """Killed outright while one call runs and the rest wait: `shoal down` still stops its
    container, and after `shoal up` every call ends with its result."""
    with running_shoal() as own:
        spawned = own.python("crash.py", "spawn", "4").stdout  # 3 s each, one container at a time
        calls = re.findall(r"call: (fc-\w+)", spawned)
        deadline = time.monotonic() + 120
        while not json.loads(own.modal("container", "list", "--json").stdout):
            assert time.monotonic() < deadline, "no container started"
            time.sleep(0.2)
        pid = json.loads((own.home / "server.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        while alive(pid):  # a killed process takes a moment to go
            assert time.monotonic() < deadline, "the server outlived SIGKILL"
            time.sleep(0.1)
        # Its containers outlive it; `shoal down` stops them, as it does a running shoal's.
        assert "stopped 1 container it left" in own.shoal("down").stdout
        runc = ["runc", "--root", str(own.home / "runtime" / "runc"), "list", "-q"]
        assert subprocess.run(runc, capture_output=True, text=True).stdout.split() == []
        assert str(own.home) not in open("/proc/self/mounts").read()
        own.up()
        results = own.python("crash.py", "get", *calls).stdout
        assert re.findall(r"result: (\d+)", results) == ["0", "1", "4", "9"]
