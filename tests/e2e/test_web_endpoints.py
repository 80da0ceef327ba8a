"""Web endpoints: `modal deploy` names each one's URL, and HTTP requests reach the function behind
it, in a container, through the client's own ASGI runtime."""

import asyncio
import hashlib
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

APP = "e2e-web"


def request(shoal, label: str, path: str = "/", data: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of a request to the endpoint at `label`: Python's resolver knows no
    *.localhost, so it connects to the web port and names the host as a browser or curl would."""
    web_port = shoal.port + 2
    sent = {"Host": f"{label}.localhost:{web_port}", "User-Agent": "e2e-test", **(headers or {})}
    req = urllib.request.Request(f"http://127.0.0.1:{web_port}{path}", data=data, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture(scope="module")
def deployed(shoal):
    out = shoal.modal("deploy", "web_endpoints.py").stdout
    yield out
    shoal.modal("app", "stop", APP, "--yes", check=False)


def test_deploy_shows_each_endpoints_url(shoal, deployed):
    web_port = shoal.port + 2
    labels = ("shoal--e2e-web-greet", "shoal--e2e-raw", "shoal--e2e-web-chat", "shoal--e2e-web-counter-web")
    for label in labels:
        assert f"http://{label}.localhost:{web_port}" in deployed
    info = json.loads(shoal.modal("function", "info", f"{APP}/total", "--json").stdout)
    url = f"http://shoal--e2e-web-total.localhost:{web_port}"
    assert info["web_info"] == {"web_url": url, "method": "POST", "unauthenticated": False}


def test_a_fastapi_endpoint_takes_query_parameters(shoal, deployed):
    status, _, body = request(shoal, "shoal--e2e-web-greet", "/?name=shoal")
    assert status == 200 and json.loads(body) == {"hello": "shoal"}


def test_an_asgi_app_gets_the_request_whole_and_streams_its_answer(shoal, deployed):
    payload = os.urandom(3 * 1024**2 + 17)  # more than one body message
    status, headers, body = request(shoal, "shoal--e2e-raw", "/some/path?x=1&y=a%20b", data=payload)
    assert status == 201
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    assert body.decode().splitlines() == [
        "POST /some/path x=1&y=a%20b",
        "agent e2e-test",
        f"{len(payload)} {hashlib.sha256(payload).hexdigest()}",
    ]


def test_a_wsgi_app_a_web_server_and_a_class_method_endpoint(shoal, deployed):
    assert request(shoal, "shoal--e2e-web-classic", "/page")[2] == b"wsgi GET /page\n"
    assert request(shoal, "shoal--e2e-web-server", "/index.html")[2] == b"served by a web server\n"
    assert request(shoal, "shoal--e2e-web-counter-web")[2] == b"entered\n"  # @enter ran first


def test_websockets_both_ways(shoal, deployed):
    async def converse() -> tuple:
        host = {"Host": f"shoal--e2e-web-chat.localhost:{shoal.port + 2}"}
        url = f"http://127.0.0.1:{shoal.port + 2}"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/talk", headers=host, protocols=("chat.v1",)) as ws:
                await ws.send_str("hello")
                text = await ws.receive_str(timeout=60)
                await ws.send_bytes(b"\x01\x02\x03")
                data = await ws.receive_bytes(timeout=60)
                await ws.send_str("bye")
                closed = await ws.receive(timeout=60)
                seen = (ws.protocol, text, data, closed.type, ws.close_code)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{url}/private", headers=host)
        return seen, refused.value.status

    seen, refused = asyncio.run(converse())
    assert seen == ("chat.v1", "HELLO", b"\x03\x02\x01", aiohttp.WSMsgType.CLOSE, 4000)
    assert refused == 403


def test_proxy_auth_takes_a_token_of_this_server(shoal, deployed):
    numbers = json.dumps([1, 2, 3]).encode()
    json_type = {"Content-Type": "application/json"}
    status, _, body = request(shoal, "shoal--e2e-web-total", data=numbers, headers=json_type)
    assert status == 401 and b"Modal-Key" in body
    env = shoal.client_env()
    wrong = {**json_type, "Modal-Key": env["MODAL_TOKEN_ID"], "Modal-Secret": "wrong"}
    assert request(shoal, "shoal--e2e-web-total", data=numbers, headers=wrong)[0] == 401
    right = {**json_type, "Modal-Key": env["MODAL_TOKEN_ID"], "Modal-Secret": env["MODAL_TOKEN_SECRET"]}
    status, _, body = request(shoal, "shoal--e2e-web-total", data=numbers, headers=right)
    assert status == 200 and json.loads(body) == {"total": 6}


def test_failures_and_unknown_hosts(shoal, deployed):
    assert request(shoal, "shoal--e2e-raw", "/fail")[0] == 500
    status, _, body = request(shoal, "shoal--no-such-endpoint")
    assert status == 404 and b"No web endpoint is served at 'shoal--no-such-endpoint'" in body


def test_a_client_that_goes_away_cancels_the_input(shoal, deployed):
    web_port = shoal.port + 2
    with socket.create_connection(("127.0.0.1", web_port)) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: shoal--e2e-web-slow.localhost:{web_port}\r\n\r\n".encode())
        assert wait_for(lambda: state(shoal) == "started")
    assert wait_for(lambda: state(shoal) == "cancelled"), "the endpoint's input ran on after its client left"


def state(shoal) -> str:
    return shoal.modal("dict", "get", "e2e-web-slow", "state", check=False).stdout.strip()


def wait_for(predicate, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return result


def test_a_deployed_apps_label_is_its_own(shoal, deployed):
    proc = shoal.modal("deploy", "web_label_thief.py", check=False)
    assert proc.returncode != 0
    assert "The web endpoint label 'shoal--e2e-raw' belongs to the deployed app 'e2e-web'" in proc.stdout + proc.stderr


def test_modal_run_serves_the_apps_endpoints_at_dev_urls(shoal):
    out = shoal.modal("run", "web_endpoints.py").stdout
    assert f"url http://shoal--e2e-raw-dev.localhost:{shoal.port + 2}" in out
    assert "GET /from-run x=1" in out and "a plain function beside the endpoints" in out
    status, _, body = request(shoal, "shoal--e2e-raw-dev")
    assert status == 404 and b"stopped" in body  # the run is over


SERVED = """
import modal

app = modal.App("e2e-served")


@app.function()
@modal.asgi_app()
def page():
    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            await send({{"type": "http.response.start", "status": 200, "headers": []}})
            await send({{"type": "http.response.body", "body": b"{word}"}})

    return asgi
"""


def test_modal_serve_serves_the_app_and_its_changes(shoal, tmp_path):
    app_file = tmp_path / "served.py"
    app_file.write_text(SERVED.format(word="first"))
    serving = shoal.spawn_modal("serve", str(app_file))

    def page_says(word: bytes) -> bool:
        return request(shoal, "shoal--e2e-served-page-dev")[2] == word

    try:
        assert wait_for(lambda: page_says(b"first"))
        app_file.write_text(SERVED.format(word="second"))
        assert wait_for(lambda: page_says(b"second")), "the served app did not pick up the change"
    finally:
        serving.send_signal(signal.SIGINT)
        print(serving.communicate(timeout=60)[0])


def test_endpoints_survive_a_restart_and_go_with_their_app(shoal, deployed):
    shoal.down()
    shoal.up()
    assert request(shoal, "shoal--e2e-web-greet", "/?name=again")[2] == b'{"hello":"again"}'
    shoal.modal("app", "stop", APP, "--yes")
    status, _, body = request(shoal, "shoal--e2e-web-greet")
    assert status == 404 and b"stopped" in body
