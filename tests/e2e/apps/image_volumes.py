"""Image build steps with volumes=: run_commands and run_function write a volume while they build."""

import json
import os

import modal

app = modal.App("e2e-image-volumes")
vol = modal.Volume.from_name("e2e-image-volume", create_if_missing=True)


def download(name: str) -> None:
    # "model weights" into the volume (its models/ directory alone), a note into the image
    os.makedirs("/models/weights", exist_ok=True)
    with open(f"/models/weights/{name}", "w") as f:
        f.write("parameters!")
    vol.commit()
    with open("/baked.txt", "w") as f:
        f.write(",".join(sorted(os.listdir("/models"))))


image = (
    modal.Image.debian_slim()
    .run_commands(
        "mkdir -p /cache/commands && echo from run_commands > /cache/commands/out.txt",
        "cp /cache/commands/out.txt /in-image.txt",
        volumes={"/cache": vol},
    )
    .run_function(download, args=("model.bin",), volumes={"/models": vol.with_mount_options(sub_path="models")})
)


@app.function(image=image, volumes={"/data": vol})
def read() -> dict:
    return {
        "volume": sorted(os.path.relpath(os.path.join(d, f), "/data") for d, _, fs in os.walk("/data") for f in fs),
        "model": open(p).read() if os.path.exists(p := "/data/models/weights/model.bin") else None,
        "in_image": [open("/in-image.txt").read(), open("/baked.txt").read()],
        "mount_points_in_image": [p for p in ("/cache", "/models") if os.path.exists(p)],
    }


@app.local_entrypoint()
def main():
    print("read:", json.dumps(read.remote()))
