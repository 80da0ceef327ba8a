"""Image.run_function: a build step that runs Python in the image, with a secret and arguments."""

import json
import os

import modal

app = modal.App("e2e-build-function")


def bake(name: str, times: int = 1) -> None:
    # The secret's value reaches the build step; the file it writes becomes part of the image.
    os.makedirs("/opt/baked", exist_ok=True)
    with open("/opt/baked/out.json", "w") as f:
        json.dump({"name": name * times, "token": os.environ["BAKE_TOKEN"]}, f)
    print("baking done for", name)


image = modal.Image.debian_slim().run_function(
    bake,
    secrets=[modal.Secret.from_name("e2e-bake")],  # made by the test with `modal secret create`
    args=("ab",),
    kwargs={"times": 2},
    timeout=120,
)


@app.function(image=image, secrets=[modal.Secret.from_dict({"RUNTIME_TOKEN": "at-runtime"})])
def read() -> dict:
    baked = json.load(open("/opt/baked/out.json"))
    return {**baked, "build_token_at_runtime": os.environ.get("BAKE_TOKEN"), "runtime": os.environ["RUNTIME_TOKEN"]}


@app.local_entrypoint()
def main():
    print("read:", json.dumps(read.remote()))
