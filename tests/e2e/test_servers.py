"""Servers (`@app.server`): `modal deploy` names each one's URL, and HTTP requests reach the HTTP
server its containers run, passed on as they are."""

import concurrent.futures
import json

import pytest
from test_web_endpoints import request, wait_for

APP = "e2e-servers"


@pytest.fixture(scope="module")
def deployed(shoal):
    out = shoal.modal("deploy", "servers.py").stdout
    yield out
    shoal.modal("app", "stop", APP, "--yes", check=False)


def test_deploy_shows_each_servers_url_and_the_client_finds_it(shoal, deployed):
    port = shoal.port + 2
    assert f"http://shoal--e2e-servers-echo.localhost:{port}" in deployed
    found = shoal.python("-c", f"import modal; print(modal.Server.from_name({APP!r}, 'Private').get_url())")
    assert found.stdout.strip() == f"http://shoal--e2e-servers-private.localhost:{port}"


def test_requests_reach_the_servers_containers_which_all_listen_on_one_port(shoal, deployed):
    seen = set()

    def both_answer() -> bool:
        status, _, body = request(shoal, "shoal--e2e-servers-echo", "/some/path?q=1&r=%20")
        answer = json.loads(body)
        assert status == 200 and answer["path"] == "/some/path?q=1&r=%20"
        assert answer["headers"]["Host"].startswith("shoal--e2e-servers-echo.localhost")
        assert answer["headers"]["X-Forwarded-For"] == "127.0.0.1"
        seen.add(answer["task"])
        return len(seen) == 2

    # min_containers=2, both on this machine, both on port 8000 (the second starts once the first runs)
    assert wait_for(both_answer)
    status, _, body = request(shoal, "shoal--e2e-servers-echo", "/", data=b"hello")
    assert (status, json.loads(body)) == (201, {"reversed": "olleh"})


def test_a_server_requires_proxy_auth_unless_unauthenticated(shoal, deployed):
    status, _, body = request(shoal, "shoal--e2e-servers-private")
    assert status == 401 and b"Modal-Key" in body
    env = shoal.client_env()
    token = {"Modal-Key": env["MODAL_TOKEN_ID"], "Modal-Secret": env["MODAL_TOKEN_SECRET"]}
    status, _, body = request(shoal, "shoal--e2e-servers-private", "/", headers=token)  # from zero containers
    assert status == 200
    assert "Modal-Secret" not in json.loads(body)["headers"]  # the token is shoal's, not the server's


def test_requests_past_max_concurrency_are_refused(shoal, deployed):
    assert request(shoal, "shoal--e2e-servers-capped")[0] == 200  # its one container is up
    with concurrent.futures.ThreadPoolExecutor() as pool:
        both = pool.map(lambda _: request(shoal, "shoal--e2e-servers-capped", "/slow?5")[0], range(2))
        assert sorted(both) == [200, 429]  # the one that came second, while the first was in flight


def test_an_idle_server_scales_to_zero_and_its_exit_runs(shoal, deployed):
    status, _, body = request(shoal, "shoal--e2e-servers-brief")
    assert status == 200
    task = json.loads(body)["task"]
    assert wait_for(lambda: exited(shoal) == task), "the container did not stop with its @exit run"


def exited(shoal) -> str:
    return shoal.modal("dict", "get", APP, "exited", check=False).stdout.strip()


def test_web_server_functions_share_a_machine_too(shoal, deployed):
    seen = set()

    def both_answer() -> bool:
        status, _, body = request(shoal, "shoal--e2e-servers-classic", "/")
        assert status == 200
        seen.add(json.loads(body)["task"])
        return len(seen) == 2

    assert wait_for(both_answer)


def test_what_servers_cannot_do_yet_is_refused_by_name(shoal, tmp_path):
    app = tmp_path / "clustered_server.py"
    app.write_text(
        "import modal\n"
        "app = modal.App('e2e-clustered-server')\n"
        "@app.server(port=8000, routing_region='us-east')\n"
        "@modal.clustered(size=2)\n"
        "class Twice:\n"
        "    @modal.enter()\n"
        "    def start(self):\n"
        "        pass\n"
    )
    proc = shoal.modal("deploy", str(app), check=False)
    assert proc.returncode != 0
    assert "Server 'Twice' uses what shoal does not support yet: a clustered server" in proc.stdout + proc.stderr


def test_the_autoscaler_of_a_server_is_updated_at_run_time(shoal, deployed):
    script = (
        "import modal\n"
        f"server = modal.Server.from_name({APP!r}, 'Private')\n"
        "server.autoscaler.update(target_concurrency=2.5, min_containers=1)\n"
        "settings = server.autoscaler.settings()\n"
        "print(settings.target_concurrency, settings.min_containers)\n"
    )
    assert shoal.python("-c", script).stdout.split() == ["2.5", "1"]


def test_a_request_to_a_server_whose_container_fails_to_start_is_told_why(shoal, deployed):
    status, _, body = request(shoal, "shoal--e2e-servers-broken")
    assert status == 503 and b"failed to start" in body and b"no model here" in body, body


REDEPLOYED = '''
import http.server, threading
import modal
app = modal.App("e2e-server-versions")
VERSION = "{version}"
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(VERSION)))
        self.end_headers()
        self.wfile.write(VERSION.encode())
@app.server(port=8000, routing_region="us-east", unauthenticated=True, min_containers=1)
class Versioned:
    @modal.enter()
    def start(self):
        server = http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    @modal.exit()
    def stop(self):
        print("exit of version", VERSION)
'''


def test_a_redeployed_server_answers_with_its_new_version_and_the_old_one_exits(shoal, tmp_path):
    app = tmp_path / "versions.py"
    try:
        for version in ("one", "two"):
            app.write_text(REDEPLOYED.format(version=version))
            shoal.modal("deploy", str(app))
            # the deploy switches once the new version's container serves
            assert request(shoal, "shoal--e2e-server-versions-versioned")[2] == version.encode()
        assert wait_for(lambda: "exit of version one" in shoal.modal("app", "logs", "e2e-server-versions").stdout)
    finally:
        shoal.modal("app", "stop", "e2e-server-versions", "--yes", check=False)
