"""`shoal worker` processes joined to a control plane that runs no containers itself."""

import contextlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN, Shoal, free_ports, running_shoal
from inside import check_shell
from metering import check_billed_above_the_reservation
from test_web_endpoints import request

WORKERS = {"w-a": "H100:1", "w-b": "H100:1,A10G:1"}


class Cluster:
    def __init__(self, shoal: Shoal):
        self.shoal = shoal
        self.cache = shoal.home / "worker-cache"  # shared by the workers: the image is fetched once
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, fake_gpus: str = "", cache: Path | None = None, *args: str) -> None:
        token = json.loads((self.shoal.home / "token.json").read_text())
        before = self.joins(name)
        log = open(self.shoal.home / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            [
                str(VENV_BIN / "shoal"), "worker",
                "--server", f"http://127.0.0.1:{self.shoal.port}",
                "--token", f"{token['token_id']}:{token['token_secret']}",
                "--name", name, "--fake-gpus", fake_gpus or WORKERS[name], "--cache", str(cache or self.cache), *args,
            ],
            env=self.shoal.base_env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.wait_joined(name, before)

    def joins(self, name: str) -> int:
        return (self.shoal.home / "server.log").read_text().count(f"worker {name} joined")

    def wait_joined(self, name: str, before: int) -> None:
        deadline = time.monotonic() + 60
        while self.joins(name) == before:
            assert self.procs[name].poll() is None, (self.shoal.home / f"{name}.log").read_text()
            assert time.monotonic() < deadline, f"worker {name} did not join"
            time.sleep(0.2)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(60)


@pytest.fixture(scope="module")
def cluster():
    with running_shoal(up_args=("--no-local-worker",)) as shoal:
        cluster = Cluster(shoal)
        # The workers start after the server has written its log, so that wait_joined can read it.
        for name in WORKERS:
            cluster.start(name)
        try:
            yield cluster
        finally:
            for name in list(cluster.procs):
                cluster.stop(name)


def test_gpu_function_runs_on_the_worker_that_has_its_gpu(cluster):
    pool = json.loads(cluster.shoal.shoal("workers", "--json").stdout)
    assert {w["name"]: w["gpus"] for w in pool} == {"w-a": {"H100": 1}, "w-b": {"A10G": 1, "H100": 1}}
    out = cluster.shoal.modal("run", "workers.py::main").stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["a10g"] == "GPU-fake-w-b-1-A10G"  # only w-b has one
    assert lines["h100"] in ("GPU-fake-w-a-0-H100", "GPU-fake-w-b-0-H100")
    assert lines["nested"] == "cpu 40"
    # Workers fetch image files, not layers: of the copies' layer they fetched only the few files
    # the build container had of its own (resolv.conf and the like), not the copies of the base.
    assert lines["copied"] == "root"
    logs = "".join((cluster.shoal.home / f"{name}.log").read_text() for name in WORKERS)
    layers = [(int(n), int(total)) for n, total in re.findall(r"fetched (\d+) of (\d+) files", logs)]
    assert any(total >= 50 and n <= total // 20 for n, total in layers), logs
    assert "No worker can ever run a container with gpu=B200" in lines["impossible"]
    assert "H100:1;" in lines["impossible"] and "A10G:1, H100:1" in lines["impossible"]  # the pool's two shapes

    # Their heartbeats carry their CPU load, which the scheduler reads before adding containers. A
    # second in which the whole machine idled reads 0, so this waits for one that did not (each
    # `shoal workers` is itself work).
    def loads() -> list[float]:
        return [w["cpu_busy"] for w in json.loads(cluster.shoal.shoal("workers", "--json").stdout)]

    _wait_for(lambda: all(0.0 < busy <= 1.0 for busy in loads()), timeout=30)


def test_a_cluster_spans_workers_and_its_ranks_reach_each_other(cluster):
    port = free_ports()
    out = cluster.shoal.modal("run", "workers.py::clustered", "--port", str(port)).stdout
    ranks = json.loads(next(line for line in out.splitlines() if line.startswith("cluster: ")).split(": ", 1)[1])
    # one H100 each, so one rank on each worker; they reached rank 0 at the address of its worker's
    # machine (the address the worker connected from)
    assert sorted(r["gpu"] for r in ranks) == ["GPU-fake-w-a-0-H100", "GPU-fake-w-b-0-H100"]
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["ips"] == ["::ffff:127.0.0.1"] * 2


def test_scale_from_zero_to_max_containers_and_back_on_workers(cluster):
    out = cluster.shoal.modal("run", "workers.py::burst").stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["before"] == "0"
    assert lines["peak"] == "3" and lines["distinct containers"] == "3", out  # nine inputs, max_containers=3
    assert lines["after"] == "0"


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_inputs_of_a_lost_worker_complete_elsewhere(cluster, how):
    run = cluster.shoal.spawn_modal("run", "workers.py::slow", "--seconds", "15")
    first = ""
    for line in run.stdout:
        if m := re.search(r"running on GPU-fake-(w-[ab])-", line):
            first = m.group(1)
            break
    assert first, "the call never started"
    worker = cluster.procs[first]
    # Killed: the connection drops. Frozen: it stays open but the heartbeats stop.
    worker.send_signal(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out
    other = "w-b" if first == "w-a" else "w-a"
    assert f"result: GPU-fake-{other}-0-H100" in out
    assert f"worker {first} was lost" in out  # the lost container's log says why it ended
    if how == "killed":
        # Restarted, it clears what the killed process left running, and rejoins.
        cluster.procs.pop(first).wait(10)
        cluster.start(first)
        assert not list(cluster.shoal.home.glob(f"workers/{first}/runtime/bundles/*"))
    else:
        # Thawed, it finds its connection closed, stops its containers and joins again by itself.
        before = cluster.joins(first)
        worker.send_signal(signal.SIGCONT)
        cluster.wait_joined(first, before)


def test_work_survives_a_control_plane_restart(cluster):
    spawned = cluster.shoal.python("spawn_slow.py", "spawn").stdout
    call_id = re.search(r"call: (fc-\w+)", spawned).group(1)
    deadline = time.monotonic() + 60
    while not any(w["containers"] for w in json.loads(cluster.shoal.shoal("workers", "--json").stdout)):
        assert time.monotonic() < deadline, "the call never got a container"
        time.sleep(0.2)
    joins = {name: cluster.joins(name) for name in WORKERS}
    cluster.shoal.down()
    cluster.shoal.up("--no-local-worker")
    # The workers join again by themselves, and the accepted call runs again on one of them.
    for name in WORKERS:
        cluster.wait_joined(name, joins[name])
    out = cluster.shoal.python("spawn_slow.py", "get", call_id).stdout
    assert re.search(r"result: GPU-fake-w-[ab]-0-H100", out), out


def test_a_worker_keeps_its_cache_under_its_limit(cluster):
    cache, log = cluster.shoal.home / "w-c-cache", cluster.shoal.home / "w-c.log"
    cluster.start("w-c", "L4:1", cache, "--cache-limit", "1")  # one byte: all that no container uses goes
    flag = cluster.shoal.home / "w-c-checked"
    with contextlib.ExitStack() as stack:
        stack.callback(cluster.stop, "w-c")
        run = cluster.shoal.spawn_modal("run", "workers.py::cache", "--flag", str(flag))
        stack.callback(run.kill)  # if the test fails first: it would wait for the flag forever
        assert any("started: GPU-fake-w-c-0-L4" in line for line in run.stdout), "the call never ran"
        # The collection after its fetch found the cache over the limit, all of it in use, and kept it.
        _wait_for(
            lambda: re.search(r"removed 0 layers and 0 directories \(0 bytes\); [1-9]\d* in use", log.read_text())
        )
        flag.touch()
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0 and "imports: GPU-fake-w-c-0-L4" in out, out
        # The app has stopped, and with it the container: everything it used goes.
        _wait_for(
            lambda: re.search(
                r"removed [1-9]\d* layers and [1-9]\d* directories \(\d+ bytes\); 0 in use", log.read_text()
            )
        )
        assert not list((cache / "images" / "layers").iterdir()) and not list((cache / "images" / "files").rglob("*.*"))
        # The worker's heartbeats say so: `shoal workers` shows its cache empty, and its limit.
        _wait_for(lambda: _cache_of("w-c", cluster) == (0, 1))
        table = cluster.shoal.shoal("workers").stdout
        assert "Cache" in table and re.search(r"w-c .* 0 B/1 B", table), table
        fetched = log.read_text().count("fetched")
        out = cluster.shoal.modal("run", "workers.py::cache", "--flag", str(flag)).stdout
        assert "imports: GPU-fake-w-c-0-L4" in out
        assert log.read_text().count("fetched") > fetched  # fetched again


def _cache_of(name: str, cluster) -> tuple[int | None, int | None]:
    pool = {w["name"]: w for w in json.loads(cluster.shoal.shoal("workers", "--json").stdout)}
    return pool[name]["cache_bytes"], pool[name]["cache_limit_bytes"]


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_worker_meters_what_its_containers_use_above_their_reservations(cluster):
    # The same figures as on the embedded worker, from the worker's heartbeats and exit messages.
    check_billed_above_the_reservation(cluster.shoal)


def test_functions_with_volumes_run_on_workers_that_see_the_volumes(cluster):
    """Functions with volumes go to workers that see the control plane's volume directories on a
    shared file system (`--volumes`); the others cannot take them."""
    refused = cluster.shoal.modal("run", "volumes.py::main", check=False, timeout=300)
    assert refused.returncode != 0
    assert "No worker can ever run a container with volumes" in refused.stdout + refused.stderr
    # The same machine's directory stands in for a shared file system here.
    cluster.start("w-vol", "A10G:1", None, "--volumes", str(cluster.shoal.home / "volumes"))
    try:
        proc = cluster.shoal.modal("run", "volumes.py::main", "--name", "joined.txt", "--text", "from w-vol")
        # Only w-vol could take them: the others were refused above.
        assert "read from w-vol" in proc.stdout and "read-only Read-only file system" in proc.stdout
    finally:
        cluster.stop("w-vol")


def test_web_endpoints_run_on_workers(cluster):
    """A web request's body and answer stream through the worker to the control plane's ingress."""
    out = cluster.shoal.modal("run", "web_endpoints.py").stdout
    assert "GET /from-run x=1" in out and "a plain function beside the endpoints" in out


def test_sandboxes_run_on_workers(cluster):
    """A sandbox's stdio, and the commands run in it, travel the worker's link to the control plane."""

    def scenario(name: str, *args: str) -> dict:
        return json.loads(cluster.shoal.python("sandboxes.py", name, *args).stdout.strip().splitlines()[-1])

    out = scenario("stdio")
    assert (out["stdout"], out["stderr"], out["returncode"]) == ("héllo\ngot line\n", "oops\n", 3)
    out = scenario("lifecycle")
    assert out["exec"] == ["42", 5] and out["terminated"] == 137 and out["timed_out"] == 124
    out = scenario("ready")  # the worker tries a TCP probe's port on its own machine
    assert "ready" in out["exec"] and out["tcp"].strip() and out["never"] == "timed out"
    # The worker opens the encrypted tunnel on its machine, with a certificate of shoal's CA.
    out = scenario("tunnels", str(cluster.shoal.home / "tls" / "ca-bundle.pem"))
    assert out["https"] == out["tcp"] != ""
    assert (out["alpn 8765"], out["alpn 8767"]) == ("http/1.1", "h2")
    # A function on a worker makes sandboxes: its client trusts the router's CA the worker was given.
    printed = cluster.shoal.modal("run", "sandbox_caller.py").stdout.splitlines()
    made = json.loads(next(line for line in printed if line.startswith("{")))
    assert (made["stdout"], made["exec"]) == ("got from a function\n", "exec too\n")
    assert made["from_snapshot"] == "kept\n"  # the worker sent the sandbox's changes for its snapshot
    # what it changed and removed, as on shoal's own worker
    out = scenario("snapshot")
    assert out["lines"] == ["kept", "f", "issue gone"]
    # a connect token's requests reach the sandbox through a port its worker opens in front of it
    out = scenario("connect")
    assert out["bearer"] == ["/a/b?x=1", '{"user": "ana"}', False] and out["port_9000"] == [200, "{}"]


def test_a_function_on_a_worker_forwards_a_port(cluster):
    """modal.forward(): the worker opens the tunnel on its own machine."""
    ca_bundle = str(cluster.shoal.home / "tls" / "ca-bundle.pem")
    out = cluster.shoal.modal("run", "forward.py", "--ca-bundle", ca_bundle).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["https"] == lines["tcp"] == lines["task"] and lines["h2 alpn"] == "h2"
    assert lines["after"] == "ConnectionRefusedError"


def test_a_shell_in_a_container_on_a_worker(cluster):
    """Its terminal's output and the typed input travel the worker's link to the control plane."""
    check_shell(cluster.shoal)


def test_servers_run_on_workers(cluster):
    """A server's requests reach its containers through the port each one's worker opens before it."""
    cluster.shoal.modal("deploy", "servers.py")
    try:
        tasks = set()

        def both_answer() -> bool:
            status, _, body = request(cluster.shoal, "shoal--e2e-servers-echo", "/on-a-worker")
            assert status == 200 and json.loads(body)["path"] == "/on-a-worker"
            tasks.add(json.loads(body)["task"])
            return len(tasks) == 2

        _wait_for(both_answer, 120)  # its second container may be fetching the image on the other worker
    finally:
        cluster.shoal.modal("app", "stop", "e2e-servers", "--yes", check=False)
