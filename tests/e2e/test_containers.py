"""`modal container list|logs|exec|stop` and `modal shell` on a running app."""

import json
import re
import subprocess
import time

from conftest import VENV_BIN


def containers(shoal, app_name: str) -> list[dict]:
    rows = json.loads(shoal.modal("container", "list", "--json").stdout)
    return [r for r in rows if r["app_name"] == app_name]


def test_list_logs_exec_and_stop_a_container(shoal):
    run = shoal.spawn_modal("run", "stoppable.py")
    try:
        deadline = time.monotonic() + 120
        while not (found := containers(shoal, "e2e-stoppable")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found, "the running container is listed"
        first = found[0]["container_id"]
        assert re.fullmatch(r"ta-\w+", first)
        deadline = time.monotonic() + 60
        while f"working in {first}" not in (logs := shoal.modal("container", "logs", first).stdout):
            assert time.monotonic() < deadline, logs
            time.sleep(0.5)

        # A command in the container runs as its process does: its environment, its files.
        command = "echo in $MODAL_TASK_ID; echo to stderr >&2; test -f /root/stoppable.py && echo app here"
        executed = shoal.modal("container", "exec", "--no-pty", first, "--", "sh", "-c", command)
        # (stdout and stderr are separate streams: their lines may interleave either way)
        assert sorted(executed.stdout.splitlines()) == sorted([f"in {first}", "to stderr", "app here"])

        shoal.modal("container", "stop", first, "--yes")
        out, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    # The stopped container's input ran again in another one, and the caller got its result.
    finished_in = re.search(r"finished in (ta-\w+)", out)
    assert finished_in and finished_in.group(1) != first, out
    again = shoal.modal("container", "stop", first, "--yes", check=False)
    assert again.returncode != 0 and "already stopped" in again.stdout + again.stderr
    gone = shoal.modal("container", "exec", "--no-pty", first, "--", "true", check=False)
    assert gone.returncode != 0 and f"Container {first} is not running" in gone.stdout + gone.stderr


def test_modal_shell_into_a_running_container(shoal):
    """An interactive shell on a terminal: `script` gives the client one, and types into it."""
    run = shoal.spawn_modal("run", "long_running.py")
    try:
        deadline = time.monotonic() + 120
        while not (found := containers(shoal, "e2e-long-running")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found, "the running container is listed"
        typing = "(sleep 3; printf 'echo shell-says-$((6*7))\\n'; sleep 1; printf 'exit\\n')"
        shell = f"{typing} | script -qec '{VENV_BIN}/modal shell {found[0]['container_id']}' /dev/null"
        session = subprocess.run(
            ["bash", "-c", shell], env=shoal.client_env(), capture_output=True, text=True, timeout=120
        )
        assert session.returncode == 0, session.stdout + session.stderr
        assert "shell-says-42" in session.stdout  # the shell's answer, not the typed line
    finally:
        shoal.modal("app", "stop", "e2e-long-running", "--yes", check=False)
        run.kill()
