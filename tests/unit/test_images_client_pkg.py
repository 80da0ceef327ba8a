import glob
import importlib.metadata
import os
import subprocess
import sys

from shoal.images.client_pkg import SITECUSTOMIZE, ensure_client_pkg

HOST = "%d.%d" % sys.version_info[:2]


def _layout(built: str) -> None:
    for name in ("modal", "modal_proto", "modal_version", "synchronicity"):
        assert os.path.isdir(os.path.join(built, "pkg", name)), name
    with open(os.path.join(built, "pkg", "sitecustomize.py")) as f:
        assert f.read() == SITECUSTOMIZE == "import sys; sys.path.append('/__modal/deps')\n"
    deps = os.path.join(built, "__modal", "deps")
    for name in ("grpclib", "google/protobuf", "aiohttp", "multidict", "cbor2", "certifi", "typing_extensions.py"):
        assert os.path.exists(os.path.join(deps, name)), name
    assert not os.path.exists(os.path.join(deps, "modal"))
    assert not os.path.exists(os.path.join(built, "bin"))


def test_host_python_copies_the_installed_client(tmp_path):
    built = ensure_client_pkg(str(tmp_path), HOST)
    modal_version = importlib.metadata.version("modal")
    assert built == str(tmp_path / "client" / modal_version / f"cp{HOST.replace('.', '')}")
    _layout(built)
    assert ensure_client_pkg(str(tmp_path), HOST + ".2") == built  # a patch version is the same series
    assert sorted(os.listdir(os.path.dirname(built))) == [os.path.basename(built)]  # no work dirs left

    # The base interpreter, outside this virtualenv, imports the client from there alone.
    # (/__modal/deps is a container path; on the host it is named directly.)
    python = os.path.realpath(sys.executable)
    deps = os.path.join(built, "__modal", "deps")
    code = (
        "import modal, grpclib, google.protobuf, aiohttp, synchronicity, modal._container_entrypoint\n"
        "print(modal.__file__); print(grpclib.__file__); print(google.protobuf.__file__)"
    )
    result = subprocess.run(
        [python, "-c", code],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{built}/pkg:{deps}"},
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    modal_file, grpclib_file, protobuf_file = result.stdout.split()
    assert modal_file.startswith(f"{built}/pkg/")
    assert grpclib_file.startswith(deps + "/") and protobuf_file.startswith(deps + "/")


def test_other_python_installs_wheels_for_it(tmp_path):
    # Needs PyPI (pip downloads modal's wheels for a Python this host does not run).
    other = "3.12" if HOST != "3.12" else "3.13"
    built = ensure_client_pkg(str(tmp_path), other)
    assert built.endswith(f"/cp{other.replace('.', '')}")
    _layout(built)
    tag = f"cpython-{other.replace('.', '')}-"
    assert glob.glob(os.path.join(built, "__modal", "deps", "multidict", f"*{tag}*.so"))
    assert not glob.glob(os.path.join(built, "**", "__pycache__"), recursive=True)
