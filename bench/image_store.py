"""The content-addressed image store: what two images sharing a base store, and how fast a
cached image's rootfs is ready for a new container.

    eval "$(shoal env)"; python bench/image_store.py [package]

Builds `debian_slim()` and `debian_slim().pip_install(package)` on the running shoal, then
compares the bytes stored for both with the base's bytes plus the package layer's
(`shoal images du`). The rootfs figure times what a container start asks of the layer
store (lease the image's layers, list their directories) in this process, on the running
shoal's store, as root; it also times making the base's largest layer again from its manifest.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import modal

from shoal.cli.state import shoal_home
from shoal.images.manifest import materialise
from shoal.images.store import LayerStore


def shoal_json(*args: str):
    out = subprocess.run(
        [sys.executable, "-m", "shoal.cli.main", "images", *args, "--json"], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def build(package: str) -> tuple[dict, dict]:
    app = modal.App("shoal-bench-image-store")
    base = modal.Image.debian_slim()
    with_package = base.pip_install(package)
    app.function(image=base, name="on_base", serialized=True)(lambda: None)
    app.function(image=with_package, name="on_package", serialized=True)(lambda: None)
    with app.run():
        ids = base.object_id, with_package.object_id
    rows = {row["image_id"]: row for row in shoal_json("ls")}
    return rows[ids[0]], rows[ids[1]]


async def rootfs_times(store: LayerStore, layers: list[str], samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        lease = await store.hold(layers)
        await store.ensure(layers)
        times.append(time.perf_counter() - t0)
        await store.release(lease)
    return times


def main(package: str = "requests", samples: int = 200) -> dict:
    base, with_package = build(package)
    usage = shoal_json("du", base["image_id"], with_package["image_id"])
    package_bytes = with_package["bytes"] - base["bytes"]
    reference = base["bytes"] + package_bytes
    store = LayerStore(os.path.join(shoal_home(), "images"))
    times = asyncio.run(rootfs_times(store, with_package["layer_ids"], samples))
    largest = max(base["layer_ids"], key=lambda layer: store.size(layer).bytes)
    with tempfile.TemporaryDirectory(dir=os.path.join(store.root, "tmp")) as work:
        t0 = time.perf_counter()
        materialise(store.manifest(largest), store.files, os.path.join(work, "layer"))
        cold = time.perf_counter() - t0
    result = {
        "package": package,
        "base_bytes": base["bytes"],
        "package_layer_bytes": package_bytes,
        "stored_bytes": usage["stored_bytes"],
        "logical_bytes": usage["logical_bytes"],
        "stored_over_base_plus_package": round(usage["stored_bytes"] / reference, 3),
        "rootfs_layers": len(with_package["layer_ids"]),
        "rootfs_p50_ms": round(statistics.median(times) * 1000, 3),
        "rootfs_max_ms": round(max(times) * 1000, 3),
        "largest_layer_files": store.size(largest).files,
        "largest_layer_materialise_s": round(cold, 2),
    }
    print(
        f"stored {usage['stored_bytes'] / 1e6:.1f} MB for both images; base {base['bytes'] / 1e6:.1f} MB "
        f"+ {package} layer {package_bytes / 1e6:.1f} MB -> {result['stored_over_base_plus_package']}x "
        f"(logical {usage['logical_bytes'] / 1e6:.1f} MB)"
    )
    print(
        f"rootfs of a cached {result['rootfs_layers']}-layer image for a new container: "
        f"p50 {result['rootfs_p50_ms']} ms, max {result['rootfs_max_ms']} ms ({samples} samples)"
    )
    print(
        f"making the base's largest layer ({result['largest_layer_files']} files) again from its manifest: {cold:.2f} s"
    )
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])
