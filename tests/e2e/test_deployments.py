"""`modal deploy`: versions switched atomically, looked up by name, rolled back, kept apart per environment."""

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import APPS

APP = "e2e-deployed"


@pytest.fixture
def app_file(tmp_path):
    """A copy of the deployed app whose VERSION each deploy rewrites."""
    path = tmp_path / "deployed.py"
    template = (APPS / "deployed.py").read_text()

    def write(version: str) -> str:
        path.write_text(template.replace('VERSION = "v1"', f'VERSION = "{version}"'))
        return str(path)

    return write


@pytest.fixture
def webhook(shoal):
    """A receiver for deployment events, configured with `shoal webhooks add`."""
    events: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/events"
    shoal.shoal("webhooks", "add", url)
    assert url in shoal.shoal("webhooks", "list").stdout
    yield events
    shoal.shoal("webhooks", "remove", url)
    server.shutdown()


def call_once(shoal, env: str = "main", pinned: int | None = None) -> dict[str, str]:
    out = shoal.python("caller.py", APP, env, "once", *([str(pinned)] if pinned else [])).stdout
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def history(shoal, env: str = "main") -> list[dict]:
    return json.loads(shoal.modal("app", "history", APP, "--env", env, "--json").stdout)


def warm_tasks(shoal) -> int:
    apps = json.loads(shoal.modal("app", "list", "--json").stdout)
    return sum(int(a["tasks"]) for a in apps if a["description"] == APP and a["state"] == "deployed")


def containers(shoal) -> set[str]:
    listed = json.loads(shoal.modal("container", "list", "--json").stdout)
    return {c["container_id"] for c in listed if c["app_name"] == APP}


def wait_for(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return result


def test_deploy_switches_versions_without_failing_a_call(shoal, app_file, webhook, tmp_path):
    deployed = shoal.modal("deploy", app_file("v1"))
    assert "App deployed" in deployed.stdout + deployed.stderr
    assert call_once(shoal) == {"version": "v1", "greet": "v1:x"}
    assert wait_for(lambda: warm_tasks(shoal) >= 1), "min_containers=1 keeps a container after the deploy"

    # v2 goes live while a caller loops on calls and a long call is in flight. Its records go to
    # a file: a pipe nobody reads while the deploy runs would fill up and stall the caller.
    records_file = tmp_path / "calls.jsonl"
    with open(records_file, "w") as out:
        loop = subprocess.Popen(
            [sys.executable, "caller.py", APP, "main", "loop", str(tmp_path / "stop")],
            env=shoal.client_env(),
            cwd=APPS,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert wait_for(lambda: "ready" in records_file.read_text())
    time.sleep(2)
    shoal.modal("deploy", app_file("v2"))
    deployed_at = time.time()
    time.sleep(3)
    (tmp_path / "stop").touch()
    _, err = loop.communicate(timeout=120)
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    calls = [r for r in records if "start" in r]
    assert not [r for r in calls if "error" in r], err
    assert {"long": "v1"} in records, "a call running during the deploy finishes on the version it started on"
    assert {r["result"] for r in calls} <= {"v1", "v2"}
    assert any(r["result"] == "v1" for r in calls)
    assert all(r["result"] == "v2" for r in calls if r["start"] > deployed_at + 1.0)
    assert any(r["start"] > deployed_at + 1.0 for r in calls)
    assert call_once(shoal) == {"version": "v2", "greet": "v2:x"}
    assert "deployed says v2" in shoal.modal("run", "other_app.py").stdout
    # v1's containers drain and stop; v2's version, warm and Greeter(name="x") stay warm.
    assert wait_for(lambda: warm_tasks(shoal) == 3), warm_tasks(shoal)
    for served in ("serving v1", "serving v2"):
        assert served in shoal.modal("app", "logs", APP, "--search", served).stdout

    versions = history(shoal)
    assert [v["version"] for v in versions] == ["v2", "v1"]

    # Looked up at a version (from_name(version=)), a function or class runs it, whatever is live.
    assert call_once(shoal, pinned=1) == {"version": "v1", "greet": "v1:x"}
    assert call_once(shoal) == {"version": "v2", "greet": "v2:x"}
    missing = shoal.python("caller.py", APP, "main", "once", "7", check=False)
    assert missing.returncode != 0 and "has no version v7" in missing.stderr

    # The same code again makes no version.
    again = shoal.modal("deploy", app_file("v2"))
    assert "no changes detected" in again.stdout + again.stderr
    assert len(history(shoal)) == 2

    rolled = shoal.modal("app", "rollback", APP, "v1")
    assert "rollback successful" in rolled.stdout
    assert call_once(shoal)["version"] == "v1"
    assert [v["version"] for v in history(shoal)] == ["v3", "v2", "v1"]

    assert wait_for(lambda: len(webhook) >= 3), webhook
    assert [(e["event"], e["from_version"], e["to_version"]) for e in webhook] == [
        ("deploy", None, 1),
        ("deploy", 1, 2),
        ("rollback", 2, 3),
    ]
    assert all(e["app_name"] == APP and e["environment"] == "main" for e in webhook)


def test_environments_stay_apart(shoal, app_file):
    shoal.modal("deploy", app_file("main-1"))
    shoal.modal("environment", "create", "staging")
    assert "staging" in shoal.modal("environment", "list").stdout
    shoal.modal("deploy", "-e", "staging", app_file("staging-1"))
    assert call_once(shoal, "staging")["version"] == "staging-1"
    by_name = shoal.python("caller.py", APP, "staging", "by_name").stdout.strip()
    assert by_name == "staging:staging-1", "a container's lookups by name stay in its environment"
    main_before = history(shoal)
    assert call_once(shoal)["version"] == "main-1"
    assert history(shoal) == main_before, "a deploy to staging never touches main"
    assert [v["version"] for v in history(shoal, "staging")] == ["v1"]

    recreated = shoal.modal("deploy", "-e", "staging", "--strategy", "recreate", app_file("staging-2"))
    assert "Terminating running containers" in recreated.stdout  # the old version's containers go first
    assert call_once(shoal, "staging")["version"] == "staging-2"

    unknown = shoal.modal("deploy", "-e", "nowhere", app_file("x"), check=False)
    assert unknown.returncode != 0 and "nowhere" in unknown.stdout + unknown.stderr

    shoal.modal("environment", "delete", "staging", "--yes")
    assert "staging" not in shoal.modal("environment", "list").stdout


def test_function_and_app_inspection(shoal, app_file):
    shoal.modal("deploy", app_file("calls-1"))
    call_once(shoal)  # version() and Greeter(name="x").greet()
    newest = json.loads(shoal.modal("function", "calls", f"{APP}/version", "-n", "1", "--json").stdout)
    (call,) = newest
    assert call["status"] == "success" and call["container_id"].startswith("ta-")
    assert call["enqueued_at"] <= call["started_at"] and call["execution_time_seconds"] >= 0
    stats = json.loads(shoal.modal("function", "stats", f"{APP}/version", "--json").stdout)
    assert stats["input_success_count"] >= 1 and stats["container_started_count"] >= 1
    assert set(stats["input_percentile_stats"]) == {"Execution time (s)", "End-to-end latency (s)"}
    assert stats["container_percentile_stats"]["Startup time (s)"]["percentiles"]["p50"] > 0

    # What its containers use, sampled every few seconds while they run (the first after a second).
    def container_use() -> dict:
        stats = json.loads(shoal.modal("function", "stats", f"{APP}/version", "--json").stdout)
        return stats["container_percentile_stats"]

    assert wait_for(lambda: "Memory Usage (GiB)" in container_use())
    use = container_use()
    assert use["CPU Usage (cores)"]["unit"] == "cores" and use["CPU Usage (cores)"]["percentiles"]["p50"] >= 0
    assert use["Memory Usage (GiB)"]["unit"] == "GiB"
    assert 0.01 < use["Memory Usage (GiB)"]["percentiles"]["p50"] < 1  # a Python process with the modal client
    assert "CPU Usage (cores)" in shoal.modal("function", "stats", f"{APP}/version").stdout

    # The same over time, in buckets: up to a minute from now, so that the current one is whole.
    until = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    window = ("--since", "10m", "--until", until, "--bucket-size", "1m")
    exported = shoal.modal("function", "metrics", f"{APP}/version", *window, "--json").stdout
    series = {s["name"]: [p["value"] for p in s["points"]] for s in json.loads(exported)["series"]}
    assert sum(series["successful_calls_count"]) >= 1 and max(series["running_containers_max"]) >= 1
    assert any(v is not None for v in series["container_memory_usage_max"])
    preview = shoal.modal("function", "metrics", f"{APP}/version", "--group", "calls").stdout
    assert "successful_calls_count" in preview and "cpu_usage_avg" not in preview
    # A class's inputs belong to the variant bound to its parameters: --all-variants gathers them.
    greet = shoal.modal("function", "calls", f"{APP}/Greeter.*", "--all-variants", "-n", "1", "--json").stdout
    assert [(c["status"], c["service_method_name"]) for c in json.loads(greet)] == [("success", "greet")]
    assert call["service_method_name"] is None  # a plain function's inputs call no method
    variants = json.loads(shoal.modal("function", "variants", f"{APP}/Greeter.*", "--json").stdout)
    assert {"name": "x"} in [v["parameters"] for v in variants]

    info = json.loads(shoal.modal("app", "info", APP, "--json").stdout)
    assert {"version", "slow", "Greeter.*"} <= info["functions"].keys() and info["lifecycle"]["state"] == "deployed"
    app_stats = json.loads(shoal.modal("app", "stats", APP, "--json").stdout)["functions"]
    assert app_stats["by_name"]["version"]["counts"]["calls"]["succeeded"] >= 1
    assert app_stats["total"]["calls"]["total"] >= 2  # version() and greet()


def test_rollover_replaces_the_containers_and_keeps_the_code(shoal, app_file):
    shoal.modal("deploy", app_file("roll-1"))
    assert wait_for(lambda: warm_tasks(shoal) >= 1), "warm() keeps a container"
    versions = len(history(shoal))
    for strategy in ("rolling", "recreate"):
        before = containers(shoal)
        shoal.modal("app", "rollover", APP, "--strategy", strategy)
        assert wait_for(lambda: (now := containers(shoal)) and not now & before), f"{strategy}: new containers"
    assert len(history(shoal)) == versions + 2, "each rollover is a version of its own"
    assert call_once(shoal)["version"] == "roll-1"


def test_lookups_fail_clearly(shoal):
    missing_app = shoal.python("caller.py", "no-such-app", "main", "once", check=False)
    assert missing_app.returncode != 0 and "no-such-app" in missing_app.stderr


def test_deployed_apps_survive_a_restart(shoal, app_file):
    shoal.modal("deploy", app_file("v1"))
    before = call_once(shoal)["version"]
    info = json.loads(shoal.modal("function", "info", f"{APP}/version", "--json").stdout)
    apps = json.loads(shoal.modal("app", "list", "--json").stdout)
    assert info["app_id"] == next(a["app_id"] for a in apps if a["description"] == APP and a["state"] == "deployed")
    assert info["timeout"] == 300 and info["name"] == "version"  # Modal's default timeout
    by_id = json.loads(shoal.modal("function", "info", info["object_id"], "--json").stdout)
    assert by_id == info
    shoal.down()
    shoal.up()
    assert wait_for(lambda: warm_tasks(shoal) >= 1), "the warm pool comes back with shoal"
    assert call_once(shoal)["version"] == before
    shoal.modal("app", "stop", APP, "--yes")
    stopped = shoal.python("caller.py", APP, "main", "once", check=False)
    assert stopped.returncode != 0 and f"App '{APP}' is not deployed" in stopped.stderr
    assert warm_tasks(shoal) == 0
