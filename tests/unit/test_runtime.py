"""The container runtime against real runc and overlayfs, with a busybox rootfs.

Needs root and runc: failing (not skipping) without them keeps a broken host visible.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from test_sni_filter import client_hello

from shoal.runtime import BindMount, Container, ContainerError, ContainerSpec, Runtime
from shoal.runtime.network import NETNS_DIR
from shoal.runtime.oci import nofile_limit
from shoal.runtime.overlay import mounts_under

if os.geteuid() != 0:
    pytest.fail("tests/unit/test_runtime.py needs root (runc and overlay mounts)", pytrace=False)
if not (shutil.which("runc") or os.path.exists("/usr/sbin/runc")):
    pytest.fail("tests/unit/test_runtime.py needs runc (apt-get install runc)", pytrace=False)

BUSYBOX = "/bin/busybox"
PATH_ENV = {"PATH": "/bin"}
WAIT = 20  # seconds; a hung container fails the test instead of the suite


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A minimal rootfs: static busybox, its applets, and users alice (1000) and bob (1001)."""
    if not os.path.exists(BUSYBOX):
        install = "apt-get install -y busybox-static || (apt-get update && apt-get install -y busybox-static)"
        result = subprocess.run(["sh", "-c", install], capture_output=True, text=True)
        if not os.path.exists(BUSYBOX):
            pytest.fail(f"needs {BUSYBOX}; installing busybox-static failed:\n{result.stderr}", pytrace=False)
    root = tmp_path_factory.mktemp("base")
    (root / "bin").mkdir()
    (root / "etc").mkdir()
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nalice:x:1000:\nbob:x:1001:\nstaff:x:50:alice\n")
    (root / "etc" / "doomed").write_text("delete me\n")
    (root / "opt" / "dir").mkdir(parents=True)
    (root / "opt" / "dir" / "old").write_text("old\n")
    return str(root)


@pytest.fixture
async def runtime(tmp_path):
    state = str(tmp_path / "state")
    rt = Runtime(state)
    yield rt
    await rt.cleanup_all()
    assert mounts_under(state) == []
    assert await rt.list_ids() == []


def new_id() -> str:
    # cgroup paths (shoal/<id>) are shared by all runtimes on the host: keep ids unique.
    return "t-" + uuid.uuid4().hex[:12]


async def run(rt: Runtime, base: str, script: str, **kw) -> tuple[int, str, str]:
    """Run `sh -c script`; return (exit code, stdout, stderr)."""
    out: dict[int, bytes] = {1: b"", 2: b""}

    def collect(fd: int, data: bytes) -> None:
        out[fd] += data

    kw.setdefault("lower_dirs", [base])
    kw.setdefault("env", PATH_ENV)
    c = await rt.start(ContainerSpec(id=new_id(), args=["sh", "-c", script], **kw), collect)
    try:
        code = await asyncio.wait_for(c.wait(), WAIT)
    finally:
        await rt.remove(c)
    return code, out[1].decode(), out[2].decode()


async def test_output_and_exit_code(runtime, base):
    code, out, err = await run(runtime, base, "echo out; echo err >&2; exit 7")
    assert (code, out, err) == (7, "out\n", "err\n")


async def test_output_discarded_without_callback(runtime, base):
    spec = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sh", "-c", "echo x; exit 2"], env=PATH_ENV)
    c = await runtime.start(spec)
    assert await asyncio.wait_for(c.wait(), WAIT) == 2
    await runtime.remove(c)


async def test_start_reports_the_container_pid(runtime, base):
    c = await runtime.start(ContainerSpec(id=new_id(), lower_dirs=[base], args=["true"], env=PATH_ENV))
    assert c.pid
    assert await asyncio.wait_for(c.wait(), WAIT) == 0
    await runtime.remove(c)


async def test_env_and_cwd(runtime, base):
    code, out, _ = await run(runtime, base, 'echo "$FOO"; pwd', env={**PATH_ENV, "FOO": "bar baz"}, cwd="/work/dir")
    assert (code, out) == (0, "bar baz\n/work/dir\n")


@pytest.mark.parametrize(
    "user, expected",
    [
        (None, "0 0 0"),
        ("alice", "1000 1000 1000 50"),
        ("1001", "1001 1001 1001"),
        ("4242", "4242 0 0"),  # unknown uid: group 0, as Docker does
        ("1000:50", "1000 50 50"),
        ("alice:bob", "1000 1001 1001 50"),
    ],
)
async def test_user(runtime, base, user, expected):
    code, out, _ = await run(runtime, base, "echo $(id -u) $(id -g) $(id -G)", user=user)
    assert (code, out.strip()) == (0, expected)


async def test_unknown_user_name_raises(runtime, base):
    with pytest.raises(ContainerError, match="nobody"):
        await runtime.start(ContainerSpec(id=new_id(), lower_dirs=[base], args=["true"], user="nobody"))
    assert os.listdir(runtime.bundles_dir) == []


async def test_bind_mounts(runtime, base, tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "f").write_text("host\n")
    mounts = [BindMount(str(ro), "/data"), BindMount(str(rw), "/out", readonly=False)]
    code, out, err = await run(runtime, base, "cat /data/f; echo hi > /out/g; touch /data/x", bind_mounts=mounts)
    assert code != 0 and "Read-only file system" in err
    assert out == "host\n"
    assert (rw / "g").read_text() == "hi\n"
    assert not (ro / "x").exists()


async def test_standard_environment(runtime, base):
    script = "hostname; ulimit -n; cat /etc/resolv.conf; readlink /proc/self/ns/net; echo ---; cat /proc/self/mountinfo"
    code, out, _ = await run(runtime, base, script, hostname="box")
    assert code == 0
    head, mountinfo = out.split("---\n")
    lines = head.splitlines()
    assert lines[0] == "box"
    # 65536, or less where the host lets no one raise the hard limit that far (see oci.nofile_limit).
    assert int(lines[1]) == nofile_limit()
    with open("/etc/resolv.conf") as f:
        assert "\n".join(lines[2:-1]) == f.read().rstrip("\n")
    assert lines[-1] == os.readlink("/proc/self/ns/net")  # host network namespace
    points = {line.split()[4]: line for line in mountinfo.splitlines()}
    assert "size=65536k" in points["/dev/shm"]
    assert "/tmp" not in points
    assert "ro" in points["/sys"].split()[5].split(",")
    for p in ("/proc", "/dev", "/dev/pts", "/etc/resolv.conf"):
        assert p in points


@contextlib.asynccontextmanager
async def pong_service() -> AsyncIterator[int]:
    """A service on the host's loopback that answers "pong"; yields its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_host_network_reaches_loopback_services(runtime, base):
    async with pong_service() as port:
        code, out, err = await run(runtime, base, f"nc 127.0.0.1 {port} < /dev/null")
    assert (code, out) == (0, "pong\n"), err


async def test_kill_stops_sleeping_container(runtime, base):
    c = await runtime.start(ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV))
    assert c.pid and os.path.exists(f"/proc/{c.pid}")
    assert c.id in await runtime.list_ids()
    await c.kill()
    assert await asyncio.wait_for(c.wait(), WAIT) == 128 + signal.SIGKILL
    await c.kill()  # already gone: no error
    assert not c.oom_killed
    await runtime.remove(c)
    assert c.id not in await runtime.list_ids()


async def test_remove_kills_running_container(runtime, base):
    c = await runtime.start(ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV))
    await asyncio.wait_for(runtime.remove(c), WAIT)
    assert c._proc.returncode is not None


async def test_memory_and_cpu_limits(runtime, base):
    script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    code, out, _ = await run(runtime, base, script, memory_mb=48, cpu=0.5)
    assert (code, out.split()) == (0, [str(48 * 1024 * 1024), "50000"])


async def test_oom_kill_reported(runtime, base):
    # tail of an endless line buffers it all: far past the limit.
    c = await runtime.start(
        ContainerSpec(id=new_id(), lower_dirs=[base], args=["tail", "/dev/zero"], env=PATH_ENV, memory_mb=32)
    )
    assert await asyncio.wait_for(c.wait(), WAIT) == 128 + signal.SIGKILL
    assert c.oom_killed
    await runtime.remove(c)


async def test_upper_dir_kept_and_stackable_with_whiteouts(runtime, base, tmp_path):
    layer = tmp_path / "layer"
    script = "rm /etc/doomed && rm -r /opt/dir && mkdir /opt/dir && echo new > /opt/dir/new && echo top > /top"
    code, _, err = await run(runtime, base, script, upper_dir=str(layer))
    assert code == 0, err
    # The kept upper holds overlay's own markers: a 0/0 char device whiteout and an opaque dir.
    whiteout = os.lstat(layer / "etc" / "doomed")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert os.getxattr(layer / "opt" / "dir", "trusted.overlay.opaque") == b"y"
    assert (layer / "top").read_text() == "top\n"

    code, out, _ = await run(runtime, base, "ls /etc/doomed 2>&1; ls /opt/dir; cat /top", lower_dirs=[base, str(layer)])
    assert code == 0
    assert out.splitlines()[1:] == ["new", "top"]
    assert "No such file" in out.splitlines()[0]


@pytest.mark.parametrize("count", [20, 40])  # 40 such paths exceed the one-page mount option limit
async def test_many_lower_dirs_with_long_paths(runtime, base, tmp_path, count):
    layers_dir = tmp_path / ".local" / "share" / "shoal" / "images" / "layers"
    lowers = [base]
    for i in range(count):
        layer = layers_dir / os.urandom(32).hex()
        (layer / "layers").mkdir(parents=True)
        (layer / "layers" / str(i)).write_text("")
        (layer / "which").write_text(f"{i}\n")
        lowers.append(str(layer))
    assert count < 40 or len(":".join(lowers)) > os.sysconf("SC_PAGE_SIZE")
    code, out, err = await run(runtime, base, "ls /layers | wc -l; cat /which", lower_dirs=lowers)
    assert code == 0, err
    assert out.split() == [str(count), str(count - 1)]  # the last lower dir is on top


async def test_throwaway_upper_removed(runtime, base):
    spec = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sh", "-c", "echo x > /f"], env=PATH_ENV)
    c = await runtime.start(spec)
    bundle = os.path.join(runtime.bundles_dir, c.id)
    assert os.path.isdir(os.path.join(bundle, "upper"))
    assert await asyncio.wait_for(c.wait(), WAIT) == 0
    assert os.path.exists(os.path.join(bundle, "upper", "f"))
    await runtime.remove(c)
    assert not os.path.exists(bundle)
    assert mounts_under(runtime.state_dir) == []
    assert not os.path.exists(os.path.join(base, "f"))


async def test_missing_lower_dir_raises(runtime, base, tmp_path):
    with pytest.raises(ContainerError, match="does not exist"):
        await runtime.start(ContainerSpec(id=new_id(), lower_dirs=[base, str(tmp_path / "nope")], args=["true"]))


async def test_missing_executable_raises_with_runc_message(runtime, base):
    output = []
    with pytest.raises(ContainerError, match="no-such-program"):
        await runtime.start(
            ContainerSpec(id=new_id(), lower_dirs=[base], args=["no-such-program"], env=PATH_ENV),
            lambda fd, data: output.append(data),
        )
    assert output == []  # reported in the exception, not as container output
    assert os.listdir(runtime.bundles_dir) == []
    assert mounts_under(runtime.state_dir) == []
    assert await runtime.list_ids() == []


@pytest.mark.parametrize("delay", [0, 0.005, 0.02, 0.05])
async def test_cancelled_start_leaves_nothing(runtime, base, delay):
    spec = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV)
    task = asyncio.create_task(runtime.start(spec))
    await asyncio.sleep(delay)
    task.cancel()
    try:
        container = await task
    except asyncio.CancelledError:
        pass
    else:  # started before the cancel landed
        await runtime.remove(container)
    assert await runtime.list_ids() == []
    assert mounts_under(runtime.state_dir) == []
    assert not os.path.exists(os.path.join(runtime.bundles_dir, spec.id))


async def test_duplicate_id_raises(runtime, base):
    spec = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV)
    c = await runtime.start(spec)
    with pytest.raises(ContainerError, match="already exists"):
        await runtime.start(spec)
    await runtime.remove(c)


async def test_gpu_device_nodes(runtime, base):
    # A host char device stands in for /dev/nvidia0: it must appear and be allowed by the devices cgroup.
    device = next((d for d in ("/dev/fuse", "/dev/loop-control", "/dev/net/tun") if os.path.exists(d)), None)
    assert device, "no stand-in character device on this host"
    st = os.stat(device)
    node = f"c {os.major(st.st_rdev)} {os.minor(st.st_rdev)}"
    code, out, err = await run(runtime, base, f": < {device} && echo opened", gpu_devices=[device])
    assert (code, out) == (0, "opened\n"), err
    # Without it the devices cgroup refuses it, even to mknod (which CAP_MKNOD would allow).
    code, _, err = await run(runtime, base, f"mknod /dev/x {node} && : < /dev/x")
    assert code != 0 and "Operation not permitted" in err


async def test_invalid_id_raises(runtime, base):
    for bad in ("..", "a/b", ""):
        with pytest.raises(ContainerError, match="invalid container id"):
            await runtime.start(ContainerSpec(id=bad, lower_dirs=[base], args=["true"]))


async def test_cleanup_all_removes_everything(base, tmp_path):
    state = str(tmp_path / "state")
    first = Runtime(state)
    layer = tmp_path / "layer"
    running = [
        await first.start(ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV)),
        await first.start(
            ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV, upper_dir=str(layer))
        ),
    ]
    exited = await first.start(ContainerSpec(id=new_id(), lower_dirs=[base], args=["true"], env=PATH_ENV))
    await exited.wait()
    assert len(mounts_under(state)) == 3
    # A new Runtime on the same state dir, as after a restart, cleans up what the old one left.
    second = Runtime(state)
    assert sorted(await second.list_ids()) == sorted(c.id for c in [*running, exited])
    await asyncio.wait_for(second.cleanup_all(), WAIT)
    assert await second.list_ids() == []
    assert mounts_under(state) == []
    assert not os.path.exists(second.bundles_dir)
    assert layer.is_dir()  # a caller's upper dir is kept
    for c in running:
        assert await asyncio.wait_for(c.wait(), WAIT) == 128 + signal.SIGKILL


async def test_without_network_a_container_has_loopback_alone(runtime, base):
    async with pong_service() as port:
        script = f"ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags; nc 127.0.0.1 {port}"
        code, out, err = await run(runtime, base, script + " < /dev/null", network=False)
    assert out.split() == ["lo", "unknown", "0x9"], (out, err)  # loopback alone, and up
    assert code != 0 and "refused" in err  # the host's loopback service is out of reach


async def _serve(rt: Runtime, base: str, reply: str, port: int) -> Container:
    """A container with a network of its own answering `reply` on `port`, listening once it returns."""
    args = ["nc", "-ll", "-p", str(port), "-e", "echo", reply]
    container = await rt.start(ContainerSpec(id=new_id(), lower_dirs=[base], args=args, env=PATH_ENV, own_network=True))
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(container.address, port)
            writer.close()
            return container
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing listens on {container.address}:{port}")


async def test_containers_with_networks_of_their_own_listen_on_one_port(runtime, base):
    first, second = await _serve(runtime, base, "one", 8080), await _serve(runtime, base, "two", 8080)
    assert first.address != second.address
    for container, reply in ((first, "one"), (second, "two")):
        reader, writer = await asyncio.open_connection(container.address, 8080)
        assert await asyncio.wait_for(reader.readline(), WAIT) == f"{reply}\n".encode()
        writer.close()

    def namespaces() -> list[str]:
        return [n for n in os.listdir(NETNS_DIR) if n.startswith(f"shoal-{runtime.bridge.name[3:]}-")]

    assert len(namespaces()) == 2
    await runtime.remove(first)
    third = await _serve(runtime, base, "three", 8080)
    assert third.address == first.address  # the namespace the first left, kept for the next
    assert len(namespaces()) == 2
    reader, writer = await asyncio.open_connection(third.address, 8080)
    assert await asyncio.wait_for(reader.readline(), WAIT) == b"three\n"
    writer.close()
    await runtime.remove(second)
    await runtime.remove(third)


async def test_a_network_of_its_own_reaches_this_machine_through_the_bridge(runtime, base):
    """Outbound traffic leaves through the bridge, whose address is this machine's there."""
    async with pong_service() as port:
        server = await asyncio.start_server(lambda r, w: (w.write(b"host\n"), w.close()), "0.0.0.0", 0)
        async with server:
            host_port = server.sockets[0].getsockname()[1]
            script = "nc $(ip route | grep default | cut -d' ' -f3) %d < /dev/null; "
            script += "nc 127.0.0.1 %d < /dev/null"
            code, out, err = await run(runtime, base, script % (host_port, port), own_network=True)
    assert out.split() == ["host"], (out, err)  # the host's own loopback is not this one's
    assert code != 0


async def test_an_outbound_allowlist_lets_connections_reach_its_networks_alone(runtime, base):
    server = await asyncio.start_server(lambda r, w: (w.write(b"host\n"), w.close()), "0.0.0.0", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        script = f"nc $(ip route | grep default | cut -d' ' -f3) {port} < /dev/null"
        allowed = await run(runtime, base, script, own_network=True, allowed_networks=["10.233.0.0/16"])
        other = await run(runtime, base, script, own_network=True, allowed_networks=["192.0.2.0/24"])
        nothing = await run(runtime, base, script, own_network=True, allowed_networks=[])
        # in the namespace the others left (kept for the next container), without their firewall
        unlimited = await run(runtime, base, script, own_network=True)
    assert allowed[:2] == unlimited[:2] == (0, "host\n"), (allowed, unlimited)
    for refused in (other, nothing):
        assert refused[0] != 0 and refused[1] == "", refused


async def test_a_domain_allowlist_lets_tls_connections_through_by_their_server_name(runtime, base, tmp_path):
    """Each container sends a ClientHello to its machine's port 443 (through its bridge); the SNI
    filter passes it on to that port only when its server name is allowed."""
    received: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.write(b"passed\n")
        await writer.drain()
        writer.close()

    hellos = tmp_path / "hellos"
    hellos.mkdir()
    for name in ("api.allowed.test", "elsewhere.test"):
        (hellos / name).write_bytes(client_hello(name))
    server = await asyncio.start_server(answer, "0.0.0.0", 443)
    async with server:
        out = {}
        for name in ("api.allowed.test", "elsewhere.test"):
            script = f"nc $(ip route | grep default | cut -d' ' -f3) 443 < /hellos/{name}"
            out[name] = await run(
                runtime,
                base,
                script,
                own_network=True,
                allowed_domains=["*.allowed.test"],
                bind_mounts=[BindMount(str(hellos), "/hellos")],
            )
    assert out["api.allowed.test"][1] == "passed\n", out
    assert out["elsewhere.test"][1] == "", out  # closed before anything reached the server
    assert received == [(hellos / "api.allowed.test").read_bytes()]


async def test_cleanup_all_removes_the_bridge_and_its_namespaces(base, tmp_path):
    state = str(tmp_path / "state")
    first = Runtime(state)
    for domains in (None, ["pypi.org"]):  # the second's TLS connections are redirected to the SNI filter
        spec = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV, own_network=True)
        spec.allowed_domains = domains
        await first.start(spec)
    bridge = first.bridge.name

    def nat_rules() -> str:
        return subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout

    assert os.path.exists(f"/sys/class/net/{bridge}") and nat_rules().count(bridge) == 2
    second = Runtime(state)  # as after a restart
    await asyncio.wait_for(second.cleanup_all(), WAIT)
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert not any(name.startswith(f"shoal-{bridge[3:]}-") for name in os.listdir(NETNS_DIR))
    assert bridge not in nat_rules()  # its masquerade and its redirect


async def test_start_cancelled_while_runc_sets_up_leaves_nothing(runtime, base):
    # Cancelled while runc's init process sets up the rootfs (its first mount point shows in the
    # upper dir): runc killed there would leave that process behind, writing into the bundle.
    for _ in range(10):
        spec = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV)
        upper = os.path.join(runtime.bundles_dir, spec.id, "upper")
        task = asyncio.create_task(runtime.start(spec))
        while not (os.path.isdir(upper) and os.listdir(upper)) and not task.done():
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runtime.remove(await task)
        await asyncio.sleep(0.2)  # what a left-behind init process would do, it has done by now
        assert await runtime.list_ids() == []
        assert mounts_under(runtime.state_dir) == []
        assert not os.path.exists(os.path.join(runtime.bundles_dir, spec.id))


async def test_cpu_seconds_count_every_process_of_the_container(runtime, base):
    # The spinning process is a child of the container's first one, which only sleeps.
    spin = ContainerSpec(
        id=new_id(), lower_dirs=[base], args=["sh", "-c", "sh -c 'while :; do :; done' & sleep 100"], env=PATH_ENV
    )
    idle = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV)
    spinning, sleeping = await runtime.start(spin), await runtime.start(idle)
    try:
        before = runtime.cpu_seconds(spin.id), runtime.cpu_seconds(idle.id)
        await asyncio.sleep(0.5)
        after = runtime.cpu_seconds(spin.id), runtime.cpu_seconds(idle.id)
        assert after[0] - before[0] > 0.1
        assert after[1] - before[1] < 0.05
    finally:
        await runtime.remove(spinning)
        await runtime.remove(sleeping)
    assert runtime.cpu_seconds(spin.id) is None


async def test_memory_counts_what_the_container_holds(runtime, base):
    # 64 MiB written to a tmpfs stays in memory (it cannot be dropped like a file's cache).
    spec = ContainerSpec(
        id=new_id(),
        lower_dirs=[base],
        args=["sh", "-c", "dd if=/dev/zero of=/dev/shm/held bs=1M count=64 && echo held && sleep 100"],
        env=PATH_ENV,
    )
    idle = ContainerSpec(id=new_id(), lower_dirs=[base], args=["sleep", "100"], env=PATH_ENV)
    out = bytearray()
    holding, sleeping = await runtime.start(spec, lambda fd, data: out.extend(data)), await runtime.start(idle)
    try:
        deadline = time.monotonic() + WAIT
        while b"held" not in out:
            assert time.monotonic() < deadline, out
            await asyncio.sleep(0.05)
        assert runtime.memory_bytes(spec.id) >= 64 * 2**20
        assert runtime.memory_bytes(idle.id) < 8 * 2**20
    finally:
        await runtime.remove(holding)
        await runtime.remove(sleeping)
    assert runtime.memory_bytes(spec.id) is None
