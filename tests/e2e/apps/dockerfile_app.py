"""from_dockerfile (multi-stage, build args, context dir), dockerfile_commands with context
files, and add_local_dir / add_local_python_source as mounts and as copied layers."""

import json
import os

import modal

HERE = os.path.dirname(os.path.abspath(__file__))
app = modal.App("e2e-dockerfile")
dockerfile_image = modal.Image.from_dockerfile(
    os.path.join(HERE, "docker_ctx", "Dockerfile"),
    context_dir=os.path.join(HERE, "docker_ctx"),
    build_args={"GREETING": "hello"},
)
commands_image = (
    modal.Image.debian_slim()
    .dockerfile_commands(
        ["ARG WHO", "COPY /extra.txt /opt/extra.txt", 'RUN echo "$WHO" > /opt/who'],
        context_files={"/extra.txt": os.path.join(HERE, "data.txt")},
        build_args={"WHO": "build-arg"},
    )
    .add_local_dir(os.path.join(HERE, "local_dir"), "/opt/copied_dir", copy=True)
    .add_local_python_source("local_pkg", copy=True)
    .run_commands("cat /opt/copied_dir/a.txt > /opt/after_copy")
    .add_local_dir(os.path.join(HERE, "local_dir"), "/opt/mounted_dir")
    .add_local_file(os.path.join(HERE, "data.txt"), "/opt/mounted.txt")
)


@app.function(image=dockerfile_image)
def from_dockerfile() -> dict:
    import subprocess

    uv = subprocess.run(["uv", "--version"], capture_output=True, text=True).stdout.split()[0]
    return {"made": open(os.environ["MADE"]).read().strip(), "uv": uv}


@app.function(image=commands_image)
def from_commands() -> dict:
    import local_pkg

    return {
        "extra": open("/opt/extra.txt").read().strip(),
        "who": open("/opt/who").read().strip(),
        "after_copy": open("/opt/after_copy").read().strip(),
        "mounted_dir": open("/opt/mounted_dir/a.txt").read().strip(),
        "mounted_file": open("/opt/mounted.txt").read().strip(),
        "local_pkg": local_pkg.VALUE,
        "local_pkg_path": local_pkg.__file__,
    }


@app.local_entrypoint()
def main():
    print("dockerfile:", json.dumps(from_dockerfile.remote()))
    print("commands:", json.dumps(from_commands.remote()))
