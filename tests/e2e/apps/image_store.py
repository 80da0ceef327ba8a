"""Two images sharing a base, for the image store's end-to-end test."""

import importlib.metadata
import json
import os
import time

import modal

app = modal.App("e2e-image-store")
base = modal.Image.debian_slim()
with_package = base.pip_install("idna")


@app.function(image=base)
def on_base() -> bool:
    return os.path.exists("/usr/bin/python3")


@app.function(image=with_package)
def on_package() -> str:
    return importlib.metadata.version("idna")


@app.local_entrypoint()
def main(wait_for: str = ""):
    print("ran:", on_base.remote(), on_package.remote(), flush=True)
    print("images:", json.dumps({"base": base.object_id, "package": with_package.object_id}), flush=True)
    if wait_for:  # the app stays live until the test has collected garbage
        while not os.path.exists(wait_for):
            time.sleep(0.2)
        print("after gc:", on_package.remote(), flush=True)
