"""The walking skeleton end to end: the real modal client against a real `shoal up`."""

import json
import time

import pytest


def run(shoal, scenario: str) -> dict:
    proc = shoal.python("drive.py", scenario)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_modal_run_prints_result_and_container_output(shoal):
    proc = shoal.modal("run", "basics.py", "--x", "5", "--label", "squared")
    assert "squared: 25" in proc.stdout
    assert "squaring 5" in proc.stdout + proc.stderr


def test_remote_local_and_aio(shoal):
    assert run(shoal, "remote") == {"remote": 16, "local": 25, "aio": 36}


def test_map_starmap_for_each_and_exceptions(shoal):
    result = run(shoal, "map")
    assert result["ordered"] == [x * x for x in range(20)]
    assert result["unordered"] == sorted(x * x for x in range(10))
    assert result["starmap"] == [3, 7]
    assert result["for_each"] is None
    exceptions = result["exceptions"]
    assert exceptions[1:3] == ["1", "2"] and exceptions[4] == "4"
    assert "multiple of three: 0" in exceptions[0] and "multiple of three: 3" in exceptions[3]


def test_user_exception_carries_remote_traceback(shoal):
    result = run(shoal, "error")
    assert result["type"] == "ValueError"
    assert result["message"] == "bad value 7"
    assert "/root/basics.py" in result["traceback"] and "in fail" in result["traceback"]


def test_spawn_get_with_timeout_and_cancel(shoal):
    result = run(shoal, "spawn")
    assert result["value"] == 81
    assert result["early"] == "timeout"
    assert result["slow"] == 2.5
    assert result["after_cancel"] != "returned"


def test_call_graph_holds_the_calls_a_function_made(shoal):
    result = run(shoal, "call_graph")
    square = {"function": "square", "status": "SUCCESS", "children": []}
    assert result == {
        "value": 0 + 1 + 4,
        "graph": [{"function": "sum_of_squares", "status": "SUCCESS", "children": [square, square, square]}],
    }


def test_each_calls_logs_hold_what_its_input_printed(shoal):
    assert run(shoal, "call_logs") == {"logs": ["squaring 5\n", "squaring 6\n"]}


def test_restrict_modal_access_leaves_a_container_its_own_inputs_and_outputs(shoal):
    assert run(shoal, "restricted") == {"own": 8, "other": "PermissionDeniedError", "payload": 3_000_000}


def test_block_network_leaves_loopback_alone(shoal):
    result = run(shoal, "network")
    assert result["blocked"] == ["lo"]
    assert len(result["open"]) > 1, "without block_network the container shares the host's network"


def test_generator(shoal):
    assert run(shoal, "generator") == {"items": [4, 3, 2, 1]}


def test_large_arguments_and_results_travel_as_blobs(shoal):
    assert run(shoal, "big") == {"ok": True, "size": 5120000}


def test_timeout_is_enforced(shoal):
    result = run(shoal, "timeout")
    assert result["type"] == "FunctionTimeoutError"
    assert "timed out" in result["message"]


def test_retries_with_backoff(shoal):
    assert run(shoal, "retries") == {"attempts": 3}


def test_local_modules_are_mounted(shoal):
    assert run(shoal, "mounts") == {"double": 42}


def test_cls_with_parameters_enter_and_exit(shoal):
    assert run(shoal, "cls") == {"first": 11, "second": 13, "default": 5}


def test_app_list_logs_and_stop(shoal):
    proc = shoal.spawn_modal("run", "long_running.py")
    try:
        app_id = wait_for_app(shoal, "e2e-long-running")
        deadline = time.monotonic() + 60
        while "tick" not in (logs := shoal.modal("app", "logs", app_id).stdout) and time.monotonic() < deadline:
            time.sleep(1)
        assert "tick" in logs
        shoal.modal("app", "stop", "--yes", app_id)
        proc.wait(timeout=60)
        apps = json.loads(shoal.modal("app", "list", "--json").stdout)
        assert {a["app_id"]: a["state"] for a in apps}[app_id] == "stopped"
    finally:
        proc.kill()


def wait_for_app(shoal, description: str) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        apps = json.loads(shoal.modal("app", "list", "--json").stdout)
        running = [a for a in apps if a["description"] == description and a["state"] != "stopped"]
        if running and int(running[0]["tasks"]) > 0:
            return running[0]["app_id"]
        time.sleep(1)
    pytest.fail(f"app {description} never showed up running in `modal app list`")
