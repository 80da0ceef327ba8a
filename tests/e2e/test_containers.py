"""`modal container list|logs|stop` on a running app."""

import json
import re
import time


def containers(shoal, app_name: str) -> list[dict]:
    rows = json.loads(shoal.modal("container", "list", "--json").stdout)
    return [r for r in rows if r["app_name"] == app_name]


def test_list_logs_and_stop_a_container(shoal):
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

        shoal.modal("container", "stop", first, "--yes")
        out, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    # The stopped container's input ran again in another one, and the caller got its result.
    finished_in = re.search(r"finished in (ta-\w+)", out)
    assert finished_in and finished_in.group(1) != first, out
    again = shoal.modal("container", "stop", first, "--yes", check=False)
    assert again.returncode != 0 and "already stopped" in again.stdout + again.stderr
