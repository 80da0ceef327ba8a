"""Image methods beyond the basics: uv, requirements and pyproject files, shell, entrypoint."""

import json
import os

import modal

HERE = os.path.dirname(__file__)
app = modal.App("e2e-more-images")
image = (
    modal.Image.debian_slim()
    .uv_pip_install("six")
    .pip_install_from_requirements(os.path.join(HERE, "requirements.txt"))
    .pip_install_from_pyproject(os.path.join(HERE, "pyproject_app.toml"))
    .shell(["/bin/bash", "-c"])
    .run_commands("echo ${BASH_VERSION:+bash} > /opt/shell")
    .entrypoint(["/usr/bin/env", "FROM_ENTRYPOINT=yes"])
)


@app.function(image=image)
def inspect() -> dict:
    import attr
    import idna
    import six

    return {
        "six": six.__version__.split(".")[0],
        "idna": idna.__name__,
        "attr": attr.__name__,
        "uv": os.path.exists("/.uv/uv"),
        "shell": open("/opt/shell").read().strip(),
        "entrypoint": os.environ.get("FROM_ENTRYPOINT"),
    }


@app.local_entrypoint()
def main():
    print("inspect:", json.dumps(inspect.remote()))
