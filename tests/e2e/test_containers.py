"""`modal container list|logs|exec|stop` and `modal shell` on a running app."""

import re
import time

from inside import check_shell, containers


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
    check_shell(shoal)
