"""`modal.Image.from_registry` pulls from an OCI registry: Debian's docker-registry,
seeded with the python base that shoal builds from Debian packages."""

import asyncio
import hashlib
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
from conftest import CACHE, running_shoal
from registry_fixture import OCI_LAYER_TAR, OciLayout, RegistryServer, push

from shoal.images.bootstrap import bootstrap_python_base
from shoal.images.store import LayerStore

APP = """
import modal

app = modal.App("e2e-registry")
image = modal.Image.from_registry("{ref}"{secret}).env({{"FROM_REGISTRY": "yes"}})


@app.function(image=image)
def where() -> str:
    import os, sys
    return f"{{sys.version_info.major}}.{{sys.version_info.minor}} {{os.environ['FROM_REGISTRY']}}"


@app.local_entrypoint()
def main():
    print("where:", where.remote())
"""


def seeded(registry: RegistryServer, creds: str | None = None) -> str:
    """Pushes the python base that shoal builds from Debian packages; returns its ref."""
    base = asyncio.run(bootstrap_python_base(LayerStore(str(CACHE["images"])), "python:3.11-slim-bookworm", print))
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        tarball = os.path.join(tmp, "layer.tar")
        layer_dir = os.path.join(str(CACHE["images"]), "layers", base.layers[0])
        subprocess.run(["tar", "-C", layer_dir, "--numeric-owner", "-cf", tarball, "."], check=True)
        layout = OciLayout(os.path.join(tmp, "oci"))
        with open(tarball, "rb") as f:
            data = f.read()
        layer = (layout.blob(data, OCI_LAYER_TAR), "sha256:" + hashlib.sha256(data).hexdigest())
        config = {"Env": [f"{k}={v}" for k, v in base.config.env.items()], "Cmd": ["python3"]}
        layout.tag("3.11", layout.image([layer], config))
        ref = f"{registry.host}/shoal/python:3.11"
        push(layout, "3.11", ref, creds=creds)
    return ref


@pytest.fixture(scope="module")
def registry_ref():
    registry = RegistryServer()
    registry.start()
    try:
        yield seeded(registry)
    finally:
        registry.stop()


@pytest.fixture(scope="module")
def private_ref():
    registry = RegistryServer(users={"shoal": "s3cret"})
    registry.start()
    try:
        yield seeded(registry, creds="shoal:s3cret")
    finally:
        registry.stop()


def test_from_registry_pulls_and_runs(shoal, registry_ref):
    path = shoal.home / "registry_app.py"
    path.write_text(APP.format(ref=registry_ref, secret=""))
    proc = shoal.modal("run", str(path))
    assert "where: 3.11 yes" in proc.stdout
    assert "pulling" in (proc.stdout + proc.stderr).lower()  # the pull's progress reached the client


def test_private_registry_with_a_secret(shoal, private_ref):
    path = shoal.home / "private_app.py"
    login = ', secret=modal.Secret.from_dict({{"REGISTRY_USERNAME": "shoal", "REGISTRY_PASSWORD": "{password}"}})'
    path.write_text(APP.format(ref=private_ref, secret=login.format(password="wrong")))
    refused = shoal.modal("run", str(path), check=False)
    assert refused.returncode != 0
    assert "refused user 'shoal'" in refused.stdout + refused.stderr
    path.write_text(APP.format(ref=private_ref, secret=login.format(password="s3cret")))
    assert "where: 3.11 yes" in shoal.modal("run", str(path)).stdout


IMPORTED_APP = """
import modal

app = modal.App("e2e-imported")


@app.function(image=modal.Image.from_registry("site/python:3.11"))
def where() -> str:
    import sys
    return f"{sys.version_info.major}.{sys.version_info.minor} " + open("/etc/imported-marker").read().strip()


@app.local_entrypoint()
def main():
    print("where:", where.remote())
"""


def test_a_root_file_system_imported_from_this_machine_is_a_base_without_a_registry(tmp_path):
    base = asyncio.run(bootstrap_python_base(LayerStore(str(CACHE["images"])), "python:3.11-slim-bookworm", print))
    rootfs = tmp_path / "rootfs"
    layer_dir = os.path.join(str(CACHE["images"]), "layers", base.layers[0])
    subprocess.run(["cp", "-a", layer_dir, str(rootfs)], check=True)
    (rootfs / "etc" / "imported-marker").write_text("from this machine\n")
    # A store of its own: the name stays out of the cache other tests share.
    with running_shoal(clone_images=True) as own:
        imported = own.shoal("images", "import", "site/python:3.11", str(rootfs)).stdout
        assert "site/python:3.11: imported" in imported and "Python 3.11" in imported
        again = own.shoal("images", "import", "site/python:3.11", str(rootfs)).stdout
        assert "already imported" in again
        path = own.home / "imported_app.py"
        path.write_text(IMPORTED_APP)
        assert "where: 3.11 from this machine" in own.modal("run", str(path)).stdout
        refused = own.shoal("images", "import", "Bad Name", str(rootfs), check=False)
        assert refused.returncode != 0 and "is not an image name" in refused.stdout + refused.stderr
        # A token runs apps; making a directory of the server's machine readable to them takes its owner.
        token = json.loads((own.home / "token.json").read_text())
        import_etc = urllib.request.Request(
            f"http://127.0.0.1:{own.port + 1}/admin/images/import?name=leak&source=/etc",
            method="POST",
            headers={"x-modal-token-id": token["token_id"], "x-modal-token-secret": token["token_secret"]},
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(import_etc)
        assert answer.value.code == 403 and "as the user that runs shoal" in answer.value.read().decode()
