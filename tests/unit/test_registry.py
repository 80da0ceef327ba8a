"""Pulling images from a real registry (Debian's docker-registry), seeded with skopeo.

Needs root (whiteouts are character devices, owners and device files are kept): failing,
not skipping, without it keeps a broken host visible.
"""

import asyncio
import io
import os
import shutil
import stat
import time
import types

import pytest
from registry_fixture import (
    BearerProxy,
    OciLayout,
    RegistryServer,
    chardev,
    d,
    f,
    fifo,
    free_port,
    hardlink,
    push,
    symlink,
    tar_bytes,
)

from shoal.images import registry as registry_mod
from shoal.images.registry import (
    RegistryAuth,
    RegistryError,
    pull,
    registry_scheme,
    resolve_ref,
)
from shoal.images.registry_unpack import OPAQUE_XATTR, LayerFormatError, extract_layer
from shoal.images.store import LayerStore

if os.geteuid() != 0:
    pytest.fail("tests/unit/test_registry.py needs root (whiteout devices, file owners)", pytrace=False)
for tool, package in (("docker-registry", "docker-registry"), ("skopeo", "skopeo")):
    if shutil.which(tool) is None:
        pytest.fail(f"tests/unit/test_registry.py needs {tool} (apt-get install {package})", pytrace=False)

USER, PASSWORD = "alice", "s3cret"
BIG = os.urandom(3 << 20)  # several download chunks, incompressible
CONFIG = {
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "EQUATION=a=b"],
    "WorkingDir": "/work",
    "User": "1000:1000",
    "Cmd": ["python3", "-V"],
}


def base_layer():
    return [
        d("etc/"),
        f("etc/hello", b"hello\n", mode=0o640, uid=1000, gid=1001),
        f("etc/doomed", b"delete me\n"),
        d("opt/dir/"),
        f("opt/dir/old", b"old\n"),
        f("var/cache/junk", b"junk\n"),
        f("bin/busybox", b"#!fake busybox\n", mode=0o4755),
        symlink("bin/sh", "busybox"),
        hardlink("bin/hardsh", "bin/busybox"),
        chardev("dev/null", 1, 3),
        fifo("run/fifo"),
        d("private/", mode=0o700, uid=1000, gid=1000),
        f("big/blob", BIG),
        symlink("abs", "/etc"),
    ]


def top_layer():
    return [
        f("etc/.wh.doomed"),
        f("etc/new", b"new\n"),
        f("opt/dir/.wh..wh..opq"),
        f("opt/dir/fresh", b"fresh\n"),
        f(".wh.var"),
    ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """An open registry with test/img (OCI and Docker v2s2), an index, an arm64-only index,
    an image whose layer blob gets corrupted, and a zstd image."""
    server = RegistryServer()
    host = server.start()
    try:
        layout = OciLayout(str(tmp_path_factory.mktemp("oci")))
        base, top = layout.layer(base_layer()), layout.layer(top_layer())
        amd64 = layout.image([base, top], CONFIG)
        layout.tag("img", amd64)
        arm = layout.image([layout.layer([f("arch", b"arm64\n")])], {"Cmd": ["arm"]}, arch="arm64")
        layout.tag("multi", layout.index([arm, amd64]))
        layout.tag("armonly", layout.index([arm]))
        corrupt = layout.layer([f("only/here", os.urandom(200_000))])
        layout.tag("corrupt", layout.image([base, corrupt], {}))  # fails while base is downloading
        zstd = layout.layer([f("zst/file", b"zstd content\n")], compression="zstd")
        layout.tag("zstd", layout.image([zstd], {}))

        push(layout, "img", f"{host}/test/img:1")
        push(layout, "img", f"{host}/test/img:v2s2", extra=("--format", "v2s2"))
        push(layout, "multi", f"{host}/test/multi:1", extra=("--all",))
        push(layout, "multi", f"{host}/test/multi:list", extra=("--all", "--format", "v2s2"))
        push(layout, "armonly", f"{host}/test/armonly:1", extra=("--all",))
        push(layout, "corrupt", f"{host}/test/corrupt:1")
        push(layout, "zstd", f"{host}/test/zstd:1")

        blob = server.blob_path(corrupt[0]["digest"])
        with open(blob, "r+b") as fh:  # same size, one byte flipped
            fh.seek(100_000)
            byte = fh.read(1)
            fh.seek(100_000)
            fh.write(bytes([byte[0] ^ 0xFF]))

        yield types.SimpleNamespace(
            server=server,
            host=host,
            layers=[base[0]["digest"], top[0]["digest"]],
            manifest=amd64["digest"],
            corrupt=corrupt[0]["digest"],
            zstd=zstd[0]["digest"],
        )
    finally:
        server.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    """A registry behind htpasswd (HTTP Basic) auth, holding test/img:1."""
    server = RegistryServer(users={USER: PASSWORD})
    host = server.start()
    try:
        layout = OciLayout(str(tmp_path_factory.mktemp("oci-auth")))
        layout.tag("img", layout.image([layout.layer(base_layer()), layout.layer(top_layer())], CONFIG))
        push(layout, "img", f"{host}/test/img:1", creds=f"{USER}:{PASSWORD}")
        yield host
    finally:
        server.stop()


@pytest.fixture
def store(tmp_path):
    return LayerStore(str(tmp_path / "store"))


def hexes(digests):
    return [x.partition(":")[2] for x in digests]


def check_image_layers(store: LayerStore, layers: list[str]) -> None:
    base, top = (store.layer_dir(i) for i in layers)
    # base: contents, owners, modes, mtimes, links, devices
    with open(f"{base}/etc/hello", "rb") as fh:
        assert fh.read() == b"hello\n"
    st = os.lstat(f"{base}/etc/hello")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)) == (0o640, 1000, 1001, 1_600_000_000)
    assert stat.S_IMODE(os.lstat(f"{base}/bin/busybox").st_mode) == 0o4755
    assert os.readlink(f"{base}/bin/sh") == "busybox"
    assert os.readlink(f"{base}/abs") == "/etc"
    assert os.lstat(f"{base}/bin/hardsh").st_ino == os.lstat(f"{base}/bin/busybox").st_ino
    null = os.lstat(f"{base}/dev/null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISFIFO(os.lstat(f"{base}/run/fifo").st_mode)
    private = os.lstat(f"{base}/private")
    assert (stat.S_IMODE(private.st_mode), private.st_uid, int(private.st_mtime)) == (0o700, 1000, 1_600_000_000)
    assert int(os.lstat(f"{base}/etc").st_mtime) == 1_600_000_000  # set after its files were written
    with open(f"{base}/big/blob", "rb") as fh:
        assert fh.read() == BIG
    assert OPAQUE_XATTR not in os.listxattr(f"{base}/opt/dir")
    # top: whiteouts as 0/0 char devices, an opaque directory, new files
    for gone in ("etc/doomed", "var"):
        st = os.lstat(f"{top}/{gone}")
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, gone
    assert not any(name.startswith(".wh.") for _, dirs, files in os.walk(top) for name in dirs + files)
    assert os.getxattr(f"{top}/opt/dir", OPAQUE_XATTR) == b"y"
    assert sorted(os.listdir(f"{top}/opt/dir")) == ["fresh"]
    with open(f"{top}/etc/new", "rb") as fh:
        assert fh.read() == b"new\n"
    assert not os.path.exists(f"{top}/etc/hello")


async def test_pull_layers_config_and_cache(seeded, store, monkeypatch):
    lines: list[str] = []
    image = await pull(store, f"{seeded.host}/test/img:1", log=lines.append)
    assert image.layers == hexes(seeded.layers)
    assert image.built == 2
    check_image_layers(store, image.layers)
    config = image.config
    assert config.env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "EQUATION": "a=b"}
    assert (config.workdir, config.user, config.entrypoint) == ("/work", "1000:1000", None)
    assert config.cmd == ["python3", "-V"]
    assert config.shell == ["/bin/sh", "-c"] and config.python_version is None
    assert lines[0] == f"pulling {seeded.host}/test/img:1"
    assert any(line.startswith(f"layer {seeded.layers[0][:19]}… 3.") and " MB" in line for line in lines), lines
    assert os.listdir(os.path.join(store.root, "tmp")) == []

    # A second pull downloads nothing: the layers are found by digest.
    inode = os.stat(store.layer_dir(image.layers[0])).st_ino

    async def no_download(*args):
        raise AssertionError("a cached layer was downloaded again")

    monkeypatch.setattr(registry_mod, "_download_layer", no_download)
    lines.clear()
    again = await pull(store, f"{seeded.host}/test/img:1", log=lines.append)
    assert again.layers == image.layers and again.built == 0 and again.config == image.config
    assert os.stat(store.layer_dir(image.layers[0])).st_ino == inode
    assert sum("cached" in line for line in lines) >= 2


async def test_pull_docker_v2s2_manifest(seeded, store):
    image = await pull(store, f"{seeded.host}/test/img:v2s2")
    assert image.layers == hexes(seeded.layers)
    check_image_layers(store, image.layers)
    assert image.config.env["LANG"] == "C.UTF-8" and image.config.cmd == ["python3", "-V"]


async def test_pull_by_digest(seeded, store):
    image = await pull(store, f"{seeded.host}/test/img@{seeded.manifest}")
    assert image.layers == hexes(seeded.layers)


async def test_index_picks_linux_amd64(seeded, store):
    image = await pull(store, f"{seeded.host}/test/multi:1")
    assert image.layers == hexes(seeded.layers)
    assert image.config.cmd == ["python3", "-V"]


async def test_docker_manifest_list_picks_linux_amd64(seeded, store):
    lines: list[str] = []
    image = await pull(store, f"{seeded.host}/test/multi:list", log=lines.append)
    assert image.layers == hexes(seeded.layers)
    assert image.config.cmd == ["python3", "-V"]


async def test_concurrent_pulls_share_layers(seeded, store):
    first, second = await asyncio.gather(
        pull(store, f"{seeded.host}/test/img:1"), pull(store, f"{seeded.host}/test/img:v2s2")
    )
    assert first.layers == second.layers == hexes(seeded.layers)
    assert first.built + second.built == 2  # each layer downloaded once
    check_image_layers(store, first.layers)


async def test_index_without_amd64(seeded, store):
    with pytest.raises(RegistryError, match=r"no linux/amd64 image \(platforms: linux/arm64\)"):
        await pull(store, f"{seeded.host}/test/armonly:1")


async def test_unknown_tag_and_repository(seeded, store):
    with pytest.raises(RegistryError, match=r"unknown image or tag 127\.0\.0\.1:\d+/test/img:nope \(MANIFEST_UNKNOWN"):
        await pull(store, f"{seeded.host}/test/img:nope")
    with pytest.raises(RegistryError, match=r"unknown image or tag .*/test/missing:1 \("):
        await pull(store, f"{seeded.host}/test/missing:1")


async def test_unreachable_registry(store):
    with pytest.raises(RegistryError, match=r"cannot reach registry 127\.0\.0\.1:\d+"):
        await pull(store, f"127.0.0.1:{free_port()}/test/img:1")


async def test_digest_mismatch_is_detected(seeded, store):
    with pytest.raises(RegistryError, match=f"layer {seeded.corrupt} .*digest mismatch"):
        await pull(store, f"{seeded.host}/test/corrupt:1")
    assert not store.has(seeded.corrupt.partition(":")[2])
    assert os.listdir(os.path.join(store.root, "tmp")) == []


async def test_cancelled_pull_leaves_nothing(seeded, store, monkeypatch):
    """Cancelling a pull mid-layer stops the unpacking thread and removes the half layer."""
    real_extract = registry_mod.extract_layer
    threads_done = []

    def slow_extract(pipe, dest, media_type):
        class Slow:
            def read(self, n=-1):
                time.sleep(0.02)
                return pipe.read(min(n, 16384) if n and n > 0 else 16384)

        try:
            real_extract(Slow(), dest, media_type)
        finally:
            threads_done.append(dest)

    monkeypatch.setattr(registry_mod, "extract_layer", slow_extract)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pull(store, f"{seeded.host}/test/img:1"), 0.5)
    assert len(threads_done) == 2  # both unpackers ended before pull returned
    assert not store.has(hexes(seeded.layers)[0])  # the big one was cut off
    assert os.listdir(os.path.join(store.root, "tmp")) == []


async def test_zstd_layer(seeded, store):
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(RegistryError, match=r"zstd-compressed .*`zstandard` is not installed"):
            await pull(store, f"{seeded.host}/test/zstd:1")
        assert not store.has(seeded.zstd.partition(":")[2])
    else:
        image = await pull(store, f"{seeded.host}/test/zstd:1")
        with open(f"{store.layer_dir(image.layers[0])}/zst/file", "rb") as fh:
            assert fh.read() == b"zstd content\n"


async def test_mirror_for_docker_hub(seeded, store):
    """test/img:1 means docker.io/test/img:1; the mirror serves it."""
    image = await pull(store, "test/img:1", mirrors={"docker.io": seeded.host})
    assert image.layers == hexes(seeded.layers)


async def test_basic_auth(auth_registry, store):
    ref = f"{auth_registry}/test/img:1"
    with pytest.raises(RegistryError, match=r"requires a username and password"):
        await pull(store, ref)
    with pytest.raises(RegistryError, match=r"authentication failed for .*test/img: .*refused user 'alice'"):
        await pull(store, ref, auth=RegistryAuth(USER, "wrong"))
    image = await pull(store, ref, auth=RegistryAuth(USER, PASSWORD))
    check_image_layers(store, image.layers)


async def test_bearer_token_auth(seeded, store):
    proxy = BearerProxy(seeded.host, USER, PASSWORD)
    host = await proxy.start()
    try:
        ref = f"{host}/test/img:1"
        with pytest.raises(RegistryError, match=r"authentication failed for .*token service .* refused anonymous"):
            await pull(store, ref)
        with pytest.raises(RegistryError, match=r"authentication failed for .*token service .* refused user 'alice'"):
            await pull(store, ref, auth=RegistryAuth(USER, "wrong"))
        proxy.token_requests.clear()
        image = await pull(store, ref, auth=RegistryAuth(USER, PASSWORD))
        assert image.layers == hexes(seeded.layers)
        check_image_layers(store, image.layers)
        # One token for the whole pull, asked for with the challenge's scope and service.
        assert proxy.token_requests == [{"scope": "repository:test/img:pull", "service": "shoal-test"}]
        assert sum("/blobs/" in p for p in proxy.requests) == 3  # config + 2 layers
    finally:
        await proxy.stop()


# -- references ----------------------------------------------------------------------------


def test_resolve_ref():
    h = "a" * 64
    assert resolve_ref("python:3.11-slim-bookworm", {}) == ("docker.io", "library/python", "3.11-slim-bookworm")
    assert resolve_ref("ubuntu", {}) == ("docker.io", "library/ubuntu", "latest")
    assert resolve_ref("nvidia/cuda:12.4.1-runtime", {}) == ("docker.io", "nvidia/cuda", "12.4.1-runtime")
    assert resolve_ref("docker.io/library/python:3.12", {}) == ("docker.io", "library/python", "3.12")
    assert resolve_ref("index.docker.io/foo/bar", {}) == ("docker.io", "foo/bar", "latest")
    assert resolve_ref(f"localhost:5000/a/b@sha256:{h}", {}) == ("localhost:5000", "a/b", f"sha256:{h}")
    assert resolve_ref(f"ghcr.io/org/img:1.0@sha256:{h}", {}) == ("ghcr.io", "org/img", f"sha256:{h}")
    assert resolve_ref("quay.io/org/img:v1", {}) == ("quay.io", "org/img", "v1")
    # docker.io is rewritten to a mirror; other registries are not
    mirrors = {"docker.io": "mirror.internal:5000"}
    assert resolve_ref("python:3.11", mirrors) == ("mirror.internal:5000", "library/python", "3.11")
    assert resolve_ref("docker.io/nvidia/cuda:12", mirrors) == ("mirror.internal:5000", "nvidia/cuda", "12")
    assert resolve_ref("ghcr.io/org/img:1", mirrors) == ("ghcr.io", "org/img", "1")
    with_prefix = {"docker.io": "http://harbor.corp/hub/"}
    assert resolve_ref("python", with_prefix) == ("harbor.corp", "hub/library/python", "latest")
    for bad in ("", "Python:3", "python:bad tag", "img@sha256:short", "img@md5:" + h):
        with pytest.raises(RegistryError, match="reference"):
            resolve_ref(bad, {})


def test_registry_scheme(monkeypatch):
    monkeypatch.delenv("SHOAL_INSECURE_REGISTRIES", raising=False)
    assert registry_scheme("localhost:5000") == "http"
    assert registry_scheme("127.0.0.1:5000") == "http"
    assert registry_scheme("[::1]:5000") == "http"
    assert registry_scheme("ghcr.io") == "https"
    assert registry_scheme("registry.lan:5000") == "https"
    monkeypatch.setenv("SHOAL_INSECURE_REGISTRIES", "registry.lan:5000, other.lan")
    assert registry_scheme("registry.lan:5000") == "http"
    assert registry_scheme("other.lan:443") == "http"
    assert registry_scheme("registry.lan:6000") == "https"


async def test_mirror_scheme_is_honoured(monkeypatch, store):
    """An http:// mirror is spoken to over http even though its host is not loopback."""
    seen = []

    class Stop(Exception):
        pass

    async def fake_manifest(client, reference, display):
        seen.append(client.base)
        raise Stop

    monkeypatch.setattr(registry_mod, "_manifest", fake_manifest)
    with pytest.raises(Stop):
        await pull(store, "python:3.11", mirrors={"docker.io": "http://mirror.lan:5000"})
    with pytest.raises(Stop):
        await pull(store, "python:3.11")
    assert seen == ["http://mirror.lan:5000/v2/library/python", "https://registry-1.docker.io/v2/library/python"]


# -- unpacking -----------------------------------------------------------------------------


def unpack(entries, dest) -> str:
    os.makedirs(dest, exist_ok=True)
    extract_layer(io.BytesIO(tar_bytes(entries)), str(dest))
    return str(dest)


def test_unpack_refuses_paths_outside(tmp_path):
    with pytest.raises(LayerFormatError, match="outside the layer"):
        unpack([f("../escape", b"x")], tmp_path / "a")
    assert not (tmp_path / "escape").exists()
    with pytest.raises(LayerFormatError, match="not in this layer"):
        unpack([hardlink("passwd", "/etc/passwd")], tmp_path / "b")
    with pytest.raises(LayerFormatError, match="outside the layer"):
        unpack([hardlink("up", "../../etc/passwd")], tmp_path / "c")


def test_unpack_symlinks_resolve_inside_the_layer(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = unpack(
        [
            symlink("evil", str(outside)),  # absolute: means <layer>/<outside>
            f("evil/pwned", b"no"),
            symlink("up", "../../../.."),
            f("up/pwned2", b"no"),
            d("usr/lib/"),
            symlink("lib", "usr/lib"),
            f("lib/libfoo.so", b"foo"),
        ],
        tmp_path / "layer",
    )
    assert os.listdir(outside) == []
    assert (tmp_path / "layer" / str(outside).lstrip("/") / "pwned").read_bytes() == b"no"
    assert (tmp_path / "layer" / "pwned2").read_bytes() == b"no"
    assert os.readlink(f"{dest}/lib") == "usr/lib"
    assert (tmp_path / "layer" / "usr" / "lib" / "libfoo.so").read_bytes() == b"foo"


def test_unpack_same_layer_whiteout_rules(tmp_path):
    dest = unpack(
        [
            f(".wh.gone"),  # deleted below, re-created here as a directory: opaque
            d("gone/"),
            f("gone/new", b"n"),
            d("kept/"),  # this layer's directory, whiteout of the lower one: opaque
            f("kept/mine", b"m"),
            f(".wh.kept"),
            f("file", b"f"),  # this layer's file stays
            f(".wh.file"),
            f(".wh..wh.plnk"),  # AUFS bookkeeping: ignored
            f("plain", b"uncompressed tar"),
        ],
        tmp_path / "layer",
    )
    assert os.getxattr(f"{dest}/gone", OPAQUE_XATTR) == b"y"
    assert os.getxattr(f"{dest}/kept", OPAQUE_XATTR) == b"y"
    assert os.listdir(f"{dest}/kept") == ["mine"]
    assert (tmp_path / "layer" / "file").read_bytes() == b"f"
    assert sorted(os.listdir(dest)) == ["file", "gone", "kept", "plain"]


def test_unpack_corrupt_gzip(tmp_path):
    import gzip

    data = bytearray(gzip.compress(tar_bytes([f("a", os.urandom(50_000))])))
    data[len(data) // 2] ^= 0xFF
    os.makedirs(tmp_path / "layer")
    with pytest.raises(LayerFormatError, match="corrupt"):
        extract_layer(io.BytesIO(bytes(data)), str(tmp_path / "layer"))


def test_unpack_multi_member_gzip(tmp_path):
    """eStargz and pigz write several gzip members; all of them are read."""
    import gzip

    raw = tar_bytes([f("a", b"x" * 5000), f("b", b"y" * 5000)])
    data = gzip.compress(raw[:3000]) + gzip.compress(raw[3000:]) + b"\0" * 64
    os.makedirs(tmp_path / "layer")
    extract_layer(io.BytesIO(data), str(tmp_path / "layer"))
    assert (tmp_path / "layer" / "b").read_bytes() == b"y" * 5000
