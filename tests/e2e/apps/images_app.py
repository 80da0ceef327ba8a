"""The Image methods the walking skeleton supports, stacked as layers."""

import json
import os

import modal

app = modal.App("e2e-images")
image = (
    modal.Image.debian_slim()
    .apt_install("jq")
    .pip_install("six")
    .run_commands("echo built-by-run-commands > /opt/marker")
    .env({"GREETING": "hello from env"})
    .workdir("/srv/app")
    .add_local_file("data.txt", "/opt/data.txt", copy=True)
)


@app.function(image=image)
def inspect() -> dict:
    import six

    return {
        "jq": os.path.exists("/usr/bin/jq"),
        "six": six.__version__,
        "marker": open("/opt/marker").read().strip(),
        "greeting": os.environ["GREETING"],
        "cwd": os.getcwd(),
        "copied": open("/opt/data.txt").read().strip(),
    }


@app.local_entrypoint()
def main():
    print("inspect:", json.dumps(inspect.remote()))
