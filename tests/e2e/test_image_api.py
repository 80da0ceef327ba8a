"""The rest of Modal's Image API: Dockerfiles, local files, run_function, secrets, uv,
requirement files, shell, entrypoint, from_id, and builds shared by concurrent clients."""

import json
import re
import uuid
from pathlib import Path


def _result(output: str, label: str) -> dict:
    return json.loads(re.search(rf"{label}: (\{{.*\}})", output).group(1))


def _layer_dir(shoal, image_prefix: str) -> Path:
    """The top layer of the newest image whose last step starts with `image_prefix`."""
    images = json.loads(shoal.shoal("images", "ls", "--json").stdout)
    image = max((i for i in images if i["step"].startswith(image_prefix)), key=lambda i: i["created_at"])
    return shoal.home / "images" / "layers" / image["layer_ids"][-1]


def test_from_dockerfile_multi_stage_and_local_files(shoal):
    out = shoal.modal("run", "dockerfile_app.py").stdout
    assert _result(out, "dockerfile") == {"made": "hello from the context", "uv": "uv"}
    assert _result(out, "commands") == {
        "extra": "copied into the image",
        "who": "build-arg",
        "after_copy": "mounted dir file",
        "mounted_dir": "mounted dir file",
        "mounted_file": "copied into the image",
        "local_pkg": "from local_pkg",
        "local_pkg_path": "/root/local_pkg/__init__.py",
    }


def test_uv_requirements_pyproject_shell_entrypoint(shoal):
    out = shoal.modal("run", "more_images.py").stdout
    assert _result(out, "inspect") == {
        "six": "1", "idna": "idna", "attr": "attr", "uv": True, "shell": "bash", "entrypoint": "yes",
    }  # fmt: skip


def test_run_function_with_secret_bakes_a_layer(shoal):
    shoal.modal("secret", "create", "e2e-bake", "BAKE_TOKEN=s3cr3t")
    assert "e2e-bake" in shoal.modal("secret", "list").stdout
    try:
        proc = shoal.modal("run", "build_function.py")
        assert _result(proc.stdout, "read") == {
            "name": "abab", "token": "s3cr3t", "build_token_at_runtime": None, "runtime": "at-runtime",
        }  # fmt: skip
        # The layer holds what the function wrote, not the runtime's mount points or the client package.
        layer = _layer_dir(shoal, "run_function")
        files = sorted(str(p.relative_to(layer)) for p in layer.rglob("*") if not p.is_dir())
        assert files == ["opt/baked/out.json"]
        again = shoal.modal("run", "build_function.py")
        assert "baking done" not in again.stdout + again.stderr  # cached
    finally:
        shoal.modal("secret", "delete", "e2e-bake", "--yes")
    assert "e2e-bake" not in shoal.modal("secret", "list").stdout


def test_failing_run_function_reports_traceback_and_caches_nothing(shoal):
    for _ in range(2):
        proc = shoal.modal("run", "failing_function.py::never", check=False)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "run_function(explode)" in output
        assert "RuntimeError: the build function broke" in output
        assert "about to explode" in output  # streamed log, the second time too: nothing was cached


def test_run_function_stops_at_its_timeout(shoal):
    proc = shoal.modal("run", "slow_build_function.py::never", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "run_function(dawdle)" in output and "timed out after 3 s" in output


def test_micromamba_without_registry_names_it(shoal):
    proc = shoal.modal("run", "micromamba_app.py::f", check=False)
    assert proc.returncode != 0
    assert "Image.micromamba() needs mambaorg/micromamba" in proc.stdout + proc.stderr


def test_image_from_id(shoal):
    built = shoal.python("image_from_id.py", "build").stdout
    image_id = re.search(r"image id: (im-\w+)", built).group(1)
    assert "read: by-id" in shoal.python("image_from_id.py", "run", image_id).stdout


def _layers_app(shoal, name: str, last: str) -> Path:
    path = shoal.home / f"{name}.py"
    path.write_text(
        "import modal\n"
        f"app = modal.App('{name}')\n"
        "image = modal.Image.debian_slim().run_commands(\n"
        f"    'echo one > /opt/1', 'echo two > /opt/2', 'echo three > /opt/3', 'echo four > /opt/4', {last!r})\n"
        "@app.function(image=image)\n"
        "def f():\n"
        "    return open('/opt/5').read()\n"
        "@app.local_entrypoint()\n"
        "def main():\n"
        "    print('last:', f.remote().strip())\n"
    )
    return path


def test_changing_the_last_layer_rebuilds_only_it(shoal):
    tag = uuid.uuid4().hex[:8]
    shoal.modal("run", str(_layers_app(shoal, "e2e-layers", f"echo {tag}-a > /opt/5")))
    proc = shoal.modal("run", str(_layers_app(shoal, "e2e-layers", f"echo {tag}-b > /opt/5")))
    assert f"last: {tag}-b" in proc.stdout
    steps = re.findall(r"=> (RUN .*)\n(=> cached)?", proc.stdout + proc.stderr)
    rebuilt = [step for step, cached in steps if not cached]
    assert rebuilt == [f"RUN echo {tag}-b > /opt/5"]


def test_concurrent_builds_of_one_image_build_once(shoal):
    tag = uuid.uuid4().hex[:8]
    path = _layers_app(shoal, "e2e-concurrent", f"sleep 3 && echo {tag} > /opt/5 && echo step-output-{tag}")
    clients = [shoal.spawn_modal("run", str(path)) for _ in range(2)]
    outputs = [client.communicate(timeout=600)[0] for client in clients]
    for client, output in zip(clients, outputs):
        assert client.returncode == 0, output
        assert f"last: {tag}" in output
        # Both stream the log of the one build: the step's own output, never "cached" for it.
        assert len(re.findall(rf"^step-output-{tag}$", output, re.M)) == 1
        assert not re.search(rf"=> RUN sleep 3 && echo {tag}.*\n=> cached", output)


def test_images_bootstrap_builds_the_debian_python_bases(shoal):
    out = shoal.shoal("images", "bootstrap", timeout=900).stdout
    assert "python:3.11-slim-bookworm" in out
