"""Looking into running containers, for the tests of the embedded worker and of joined ones."""

import json
import subprocess
import time

from conftest import VENV_BIN


def containers(shoal, app_name: str) -> list[dict]:
    rows = json.loads(shoal.modal("container", "list", "--json").stdout)
    return [r for r in rows if r["app_name"] == app_name]


def check_shell(shoal) -> None:
    """An interactive shell on a terminal: `script` gives the client one, and types into it."""
    run = shoal.spawn_modal("run", "long_running.py")
    try:
        deadline = time.monotonic() + 120
        while not (found := containers(shoal, "e2e-long-running")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found, "the running container is listed"
        check_shell_in(shoal, found[0]["container_id"])
    finally:
        shoal.modal("app", "stop", "e2e-long-running", "--yes", check=False)
        run.kill()


def check_shell_in(shoal, ref: str) -> None:
    """`modal shell REF` (a container or a sandbox): `script` gives the client a terminal, and types."""
    typing = "(sleep 3; printf 'echo shell-says-$((6*7))\\n'; sleep 1; printf 'exit\\n')"
    shell = f"{typing} | script -qec '{VENV_BIN}/modal shell {ref}' /dev/null"
    session = subprocess.run(["bash", "-c", shell], env=shoal.client_env(), capture_output=True, text=True, timeout=120)
    assert session.returncode == 0, session.stdout + session.stderr
    assert "shell-says-42" in session.stdout  # the shell's answer, not the typed line
