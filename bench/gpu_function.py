"""A GPU function run through `modal run` on an image imported from the machine's own files (see
gpu_function.sh): what PyTorch finds there. GPU="" asks for no GPU and PYTHON_LINK=1 adds the
`python` a host's own Python may lack (to try the path elsewhere)."""

import json
import os

import modal

app = modal.App("gpu-function-check")
image = modal.Image.from_registry(os.environ.get("IMAGE", "host-root")).env(
    {"PATH": f"{os.environ.get('VENV_BIN', '/opt/torch/.venv/bin')}:/usr/local/bin:/usr/bin:/bin"}
)
if os.environ.get("PYTHON_LINK"):  # a host whose Python has no `python`, which Modal's images need
    image = image.run_commands("ln -s /usr/bin/python3 /usr/local/bin/python")


@app.function(image=image, gpu=os.environ.get("GPU", "any") or None)
def check() -> dict:
    found = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import torch
    except ImportError as e:
        return found | {"torch": None, "error": str(e)}
    found |= {"torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
    if found["cuda_available"]:
        x = torch.ones(1024, 1024, device="cuda")
        found |= {"device": torch.cuda.get_device_name(0), "matmul_sum": float((x @ x).sum())}
    return found


@app.local_entrypoint()
def main():
    print(json.dumps(check.remote()))
