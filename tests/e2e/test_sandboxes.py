"""Sandboxes end to end: `modal.Sandbox` in both the client's kinds, from the client and the CLI."""

import json
import time

from inside import check_shell_in


def scenario(shoal, name: str, *args: str) -> dict:
    return json.loads(shoal.python("sandboxes.py", name, *args).stdout.strip().splitlines()[-1])


def test_a_sandbox_command_reads_stdin_and_streams_its_output(shoal):
    out = scenario(shoal, "stdio")
    assert out["v2_id"]  # the client's default kind
    assert out["stdout"] == "héllo\ngot line\n"
    assert out["stderr"] == "oops\n"
    assert out["returncode"] == 3
    assert out["logs"] == {"stdout": "héllo\ngot line\n", "stderr": "oops\n"}  # Sandbox.logs
    assert out["streamed"] == ["1", "2", "3"]
    assert out["first_line_before_last"]


def test_a_sandbox_has_its_settings_and_no_way_into_shoal(shoal):
    out = scenario(shoal, "settings")
    assert out["lines"] == ["/tmp", "bar s3cr3t", "copied into the image", "api=none", "0"]
    assert out["volume"] == "written\n"
    assert out["offline_returncode"] == 1
    assert "Network is unreachable" in out["offline_error"]


def test_sandbox_exec_names_tags_timeout_and_terminate(shoal):
    out = scenario(shoal, "lifecycle")
    assert out["exec"] == ["42", 5]
    assert out["exec_settings"] == ["/tmp", "x", "y"]
    assert out["tags"] == {"team": "ml", "run": "1"}
    assert out["from_name"]
    assert out["listed_by_tag"] == [True]
    assert out["listed_by_other_tag"] == 0
    assert out["same_name"].startswith("AlreadyExistsError") and "e2e-named" in out["same_name"]
    assert out["poll_running"] is None
    assert out["terminated"] == 137
    assert "has finished" in out["exec_after_end"]
    assert out["timed_out"] == 124


def test_a_sandbox_network_is_its_own_and_its_outbound_allowlist_holds(shoal):
    out = scenario(shoal, "network")
    assert out["open"] == "reached"  # its machine, through its bridge
    assert out["machine_loopback"] == "ConnectionRefusedError"  # not the services on the machine's loopback
    assert out["allowed"] == "reached"
    assert out["not_allowed"] == "ConnectionRefusedError"
    assert out["domain_pypi"] == "200"
    assert out["domain_files"] in ("URLError", "ConnectionResetError", "RemoteDisconnected", "SSLError")
    assert out["bad_domain"].startswith("InvalidError") and "'not a domain' is not a domain name" in out["bad_domain"]
    assert out["bad_network"].startswith("InvalidError")
    assert "'not-a-network' is not an IP network" in out["bad_network"]


def test_sandbox_filesystem(shoal):
    out = scenario(shoal, "filesystem")
    assert out["round_trip"]
    assert out["text"] == out["seen_by_commands"] == "héllo\n"
    assert out["listed"] == [["deep", "directory"], ["note.txt", "file"]]
    assert out["size"] == 256 * 4096
    assert out["missing"] == "SandboxFilesystemNotFoundError"
    assert out["after_remove"] == []


def test_a_sandbox_filesystem_snapshot_starts_later_sandboxes(shoal):
    out = scenario(shoal, "snapshot")
    assert out["image_id"].startswith("im-")
    assert out["lines"] == ["kept", "f", "issue gone"]  # a file written, and one removed, as they were


def test_sandbox_tunnels(shoal):
    out = scenario(shoal, "tunnels", str(shoal.home / "tls" / "ca-bundle.pem"))
    assert out["https_url"].startswith("https://127.0.0.1:")
    assert out["https"] == out["tcp"] != ""  # the same file, through either tunnel
    assert (out["alpn 8765"], out["alpn 8767"]) == ("http/1.1", "h2")  # h2_ports offers HTTP/2


def test_a_sandbox_connect_token_lets_http_requests_reach_its_port(shoal):
    out = scenario(shoal, "connect")
    assert out["bearer"] == ["/a/b?x=1", '{"user": "ana"}', False]  # the forged header replaced
    assert out["query"] == [200, "_modal_connect_token"]  # kept in a cookie for a browser's next requests
    assert out["cookie"] == 200
    assert out["none"] == out["forged_only"] == out["another_sandboxs_token"] == 401
    assert out["port_9000"] == [200, "{}"]
    assert out["after_terminate"] == 404


def test_a_sandboxs_inbound_allowlist_holds_for_its_tunnels_and_connect_tokens(shoal):
    out = scenario(shoal, "inbound")
    assert out["here"] == ["200", "200"]
    tunnel, token = out["elsewhere"]
    assert tunnel in ("RemoteDisconnected", "ConnectionResetError", "URLError") and token == "403"


def test_a_sandbox_readiness_probe(shoal):
    out = scenario(shoal, "ready")
    assert "ready" in out["exec"]
    assert out["tcp"].strip() != ""
    assert out["never"] == "timed out"


def test_an_idle_sandbox_ends(shoal):
    assert scenario(shoal, "idle") == {"returncode": 124, "exec": 0}


def test_a_function_makes_sandboxes(shoal):
    """The client in a container reaches the command router over TLS, trusting shoal's CA."""
    printed = shoal.modal("run", "sandbox_caller.py").stdout.splitlines()
    out = json.loads(next(line for line in printed if line.startswith("{")))
    assert out == {
        "stdout": "got from a function\n",
        "exec": "exec too\n",
        "returncode": 0,
        "from_snapshot": "kept\n",
    }


def test_a_gpu_sandbox_gets_its_gpu(shoal):
    out = scenario(shoal, "gpu")
    assert out["v1_id"]  # the client asks for GPUs through its older kind of sandbox
    assert out["stdout"] == ["GPU-fake-2-A10G", "got ping"]
    assert out["returncode"] == 0
    assert out["exec"] == "GPU-fake-2-A10G"
    assert "gpu=B200" in out["impossible"] and "A10G:1" in out["impossible"]


def test_a_sandbox_waits_for_room_in_the_pool(shoal):
    assert scenario(shoal, "queued") == {
        "waited": True,
        "created_after_the_first_ended": True,
        "stdout": "GPU-fake-2-A10G",
    }


def test_a_sandbox_command_on_a_terminal(shoal):
    out = scenario(shoal, "terminal")
    assert out["lines"][-2].startswith("/dev/pts/")  # after the terminal's echo of the input
    assert out["lines"][-1] == "got abc" and out["returncode"] == 0


def test_sandboxes_from_the_cli_and_when_their_app_stops(shoal):
    started = scenario(shoal, "start")
    task_id = started["task_id"]
    assert task_id in shoal.modal("container", "list").stdout
    executed = shoal.modal("container", "exec", "--no-pty", task_id, "--", "sh", "-c", "echo $MODAL_SANDBOX_ID")
    assert executed.stdout.strip() == started["sandbox_id"]
    check_shell_in(shoal, started["sandbox_id"])  # modal shell sb-...
    for _ in range(100):  # its output reaches the app's log as it is read
        if "started" in shoal.modal("container", "logs", started["sandbox_id"]).stdout:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("modal container logs shows no output of the sandbox")
    shoal.modal("app", "stop", "-y", "e2e-sandboxes")
    assert scenario(shoal, "result", started["sandbox_id"]) == {"returncode": 137}


def test_modal_shell_in_a_functions_environment(shoal):
    """`modal shell app.py::function`: a sandbox with the function's image and code, and its client."""
    command = "ls /root; python -c 'import modal; print(modal.__version__)'"
    out = shoal.modal("shell", "basics.py::square", "--cmd", command).stdout.split()
    assert "basics.py" in out and out[-1] == "1.6.4"


def test_a_running_sandbox_ends_with_shoal_and_its_record_stays(shoal):
    started = scenario(shoal, "start")
    shoal.down()
    shoal.up()
    assert scenario(shoal, "result", started["sandbox_id"]) == {"returncode": 137}
