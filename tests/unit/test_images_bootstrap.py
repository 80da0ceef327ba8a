import os
import shutil
import tempfile

import pytest
from test_images_support import chroot_run_step, require

from shoal.images import bootstrap
from shoal.images.bootstrap import PythonRef, bootstrap_python_base, debian_mirrors, parse_python_ref
from shoal.images.builder import Builder, BuildError
from shoal.images.client_pkg import ensure_client_pkg
from shoal.images.spec import BuiltImage
from shoal.images.store import LayerStore

# The base layer outlives test runs (it takes a minute or two to build); see the e2e cache too.
CACHE = os.environ.get("SHOAL_TEST_LAYERS", "/var/tmp/shoal-test-layers")

# What modal 1.6.4 sends for Image.debian_slim() with image builder version 2025.06.
DEBIAN_SLIM = [
    "FROM python:3.11.12-slim-bookworm",
    "RUN apt-get update",
    "RUN apt-get install -y gcc gfortran build-essential",
    "RUN pip install --upgrade pip wheel uv",
    "RUN echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections",
    'CMD ["sleep", "172800"]',
]


def test_parse_python_ref():
    assert parse_python_ref("python:3.11.12-slim-bookworm") == PythonRef("3.11.12", "bookworm")
    assert parse_python_ref("python:3.11-slim-bookworm").series == "3.11"
    assert parse_python_ref("docker.io/library/python:3.12.10-slim-trixie") == PythonRef("3.12.10", "trixie")
    for other in ("python:3.11", "python:3.11-bookworm", "ubuntu:22.04", "ghcr.io/astral-sh/uv:latest"):
        assert parse_python_ref(other) is None


@pytest.mark.parametrize(
    "ref", ["python:3.12.10-slim-bookworm", "python:3.11.12-slim-trixie", "python:3.11.0-slim-bullseye", "nginx:1"]
)
async def test_other_versions_need_a_registry(tmp_path, ref):
    with pytest.raises(BuildError) as info:
        await bootstrap_python_base(LayerStore(str(tmp_path)), ref, lambda s: None)
    message = str(info.value)
    assert ref in message and "python:3.11-slim-bookworm" in message and "SHOAL_REGISTRY" in message


def test_mirrors_come_from_the_hosts_apt_sources(monkeypatch):
    uris = [
        "https://deb.nodesource.com/node_20.x",
        "http://mirror.local/debian/",
        "http://mirror.local/debian-security",
    ]
    monkeypatch.setattr(bootstrap, "_apt_source_uris", lambda: uris)
    assert debian_mirrors() == ("http://mirror.local/debian", "http://mirror.local/debian-security")
    monkeypatch.setattr(bootstrap, "_apt_source_uris", lambda: [])
    assert debian_mirrors() == (bootstrap.DEFAULT_MIRROR, bootstrap.DEFAULT_SECURITY_MIRROR)


async def run_in(store: LayerStore, image: BuiltImage, argv: list[str], extra_lowers=(), env=None) -> str:
    """Run a command in a throw-away container of the image; its output."""
    out: list[str] = []
    scratch = tempfile.mkdtemp(dir=os.path.join(store.root, "tmp"), prefix=f"{os.getpid()}-check-")
    try:
        lowers = [store.layer_dir(layer) for layer in image.layers] + list(extra_lowers)
        run_env = {**image.config.env, **(env or {})}
        code = await chroot_run_step(lowers, scratch, argv, run_env, "/root", None, out.append)
    finally:
        shutil.rmtree(scratch)
    assert code == 0, "".join(out)
    return "".join(out)


async def test_debian_slim_on_the_bootstrapped_base(tmp_path):
    """Slow: builds python:3.11-slim-bookworm from Debian once (cached in CACHE), then Modal's debian_slim."""
    require("unshare", "mount", "mmdebstrap")
    store = LayerStore(CACHE)
    logs: list[str] = []

    base = await bootstrap_python_base(store, "python:3.11.12-slim-bookworm", logs.append)
    assert base.config.python_version == "3.11"
    assert base.config.env["LANG"] == "C.UTF-8" and base.config.env["PYTHON_VERSION"].startswith("3.11.")
    assert base.config.env["PATH"].startswith("/usr/local/sbin:/usr/local/bin:")
    layer = store.layer_dir(base.layers[0])
    assert set(os.listdir(f"{layer}/var/lib/apt/lists")) <= {"lock", "partial"}  # no package lists
    assert os.readlink(f"{layer}/usr/local/bin/python") == "/usr/bin/python3"
    assert not os.path.exists(f"{layer}/usr/lib/python3.11/EXTERNALLY-MANAGED")
    for rel, _ in bootstrap._local_cas():  # the host's own CAs (a TLS-intercepting proxy's, say)
        assert os.path.isfile(f"{layer}/usr/local/share/ca-certificates/{rel}")
    again = await bootstrap_python_base(store, "python:3.11-slim-bookworm", logs.append)
    assert again.layers == base.layers and again.built == 0

    builder = Builder(store, chroot_run_step, lambda ref, log, auth: bootstrap_python_base(store, ref, log))
    slim = await builder.build(DEBIAN_SLIM, bases={}, context={}, force_build=True, log=logs.append)
    assert slim.built == 4 and slim.layers[0] == base.layers[0]
    assert slim.config.cmd == ["sleep", "172800"] and slim.config.python_version == "3.11"

    # Image.debian_slim().pip_install("six"), as the client sends it.
    child = await builder.build(
        ["FROM base", "RUN python -m pip install six "], bases={"base": slim}, context={}, force_build=True
    )
    assert "Python 3.11" in await run_in(store, child, ["python", "--version"])
    assert "/usr/local/lib/python3.11/dist-packages/pip" in await run_in(store, child, ["pip", "--version"])
    assert "uv " in await run_in(store, child, ["uv", "--version"])
    assert "gcc" in await run_in(store, child, ["gcc", "--version"])
    assert "ok" in await run_in(store, child, ["python", "-c", "import six, ssl, sqlite3, venv; print('ok')"])

    # The client mount works with this Python: sitecustomize puts /__modal/deps on the path.
    client = ensure_client_pkg(str(tmp_path), slim.config.python_version)
    code = "import modal._container_entrypoint, grpclib; print(modal.__file__, grpclib.__file__)"
    output = await run_in(store, child, ["python", "-c", code], [client], {"PYTHONPATH": "/pkg"})
    assert output.split() == ["/pkg/modal/__init__.py", "/__modal/deps/grpclib/__init__.py"]


def test_uv_refs():
    from shoal.images.uv_image import uv_version

    assert uv_version("ghcr.io/astral-sh/uv:latest") == "latest"
    assert uv_version("ghcr.io/astral-sh/uv:0.8.3") == "0.8.3"
    assert uv_version("python:3.11-slim-bookworm") is None
