"""What a run_function container's upper dir keeps: the function's writes, not the runtime's traces."""

import os

from shoal.images.layers import LayerView
from shoal.images.snapshot import drop_runtime_files


def _touch(path, content=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)


def test_runtime_traces_go_and_the_functions_writes_stay(tmp_path):
    image, client, code, upper = (tmp_path / n for n in ("image", "client", "code", "upper"))
    _touch(f"{image}/root/.bashrc")
    _touch(f"{image}/etc/passwd")
    _touch(f"{client}/pkg/modal/__init__.py")
    _touch(f"{code}/root/app.py")
    # what the container left: pycache of the client and the app, mount points, and its real work
    _touch(f"{upper}/pkg/modal/__pycache__/__init__.cpython-311.pyc")
    _touch(f"{upper}/root/__pycache__/app.cpython-311.pyc")
    _touch(f"{upper}/__shoal/container_args.bin")
    _touch(f"{upper}/etc/shoal/ca-certificates.crt")
    _touch(f"{upper}/opt/model.bin", "weights")
    _touch(f"{upper}/root/notes.txt", "kept")
    drop_runtime_files(
        str(upper), LayerView([str(image)]), [str(client), str(code)], ("/__shoal", "/etc/shoal/ca-certificates.crt")
    )
    left = sorted(str(p.relative_to(upper)) for p in upper.rglob("*"))
    assert left == ["etc", "opt", "opt/model.bin", "root", "root/notes.txt"]


def test_files_the_image_has_are_kept(tmp_path):
    image, code, upper = (tmp_path / n for n in ("image", "code", "upper"))
    _touch(f"{image}/srv/app.py", "old")
    _touch(f"{code}/srv/app.py", "mounted")
    _touch(f"{upper}/srv/app.py", "rewritten by the function")
    drop_runtime_files(str(upper), LayerView([str(image)]), [str(code)], ())
    assert (upper / "srv/app.py").read_text() == "rewritten by the function"
