"""Pulling an image from a local registry: shoal's pull against `skopeo copy`, side by side.

The image is made here from real files of this host (/usr/lib/python3.11, /usr/share/locale,
/usr/lib/python3/dist-packages; about 100 MB gzip-compressed), one layer each, pushed to
Debian's docker-registry on loopback.
skopeo copies it twice: to a directory (download and digest check only), and into
containers-storage with the overlay driver (download, digest check, decompress and unpack
every layer: the same work as a pull that ends in a runnable image). shoal pulls it into a
fresh image store (download, digest check, unpack, and every file into the file store).
Each is run three times on a fresh destination; the best of each is compared.

    python bench/registry_pull.py      (root; no shoal server needed)
"""

import asyncio
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from registry_fixture import OCI_LAYER_GZIP, OciLayout, RegistryServer, push  # noqa: E402

from shoal.images.registry import pull  # noqa: E402
from shoal.images.store import LayerStore  # noqa: E402

SOURCES = ("/usr/lib/python3.11", "/usr/share/locale", "/usr/lib/python3/dist-packages")


def make_layout(tmp: str) -> tuple[OciLayout, int]:
    layout = OciLayout(os.path.join(tmp, "oci"))
    layers, size = [], 0
    for source in SOURCES:
        raw = subprocess.run(["tar", "-C", "/", "-cf", "-", source.lstrip("/")], capture_output=True, check=True).stdout
        blob = gzip.compress(raw, compresslevel=6, mtime=0)
        layers.append((layout.blob(blob, OCI_LAYER_GZIP), "sha256:" + hashlib.sha256(raw).hexdigest()))
        size += len(blob)
    layout.tag("bench", layout.image(layers, {"Env": ["PATH=/usr/bin"]}))
    return layout, size


def timed(action) -> float:
    t0 = time.perf_counter()
    action()
    return time.perf_counter() - t0


def main() -> dict:
    registry = RegistryServer()
    host = registry.start()
    tmp = tempfile.mkdtemp(prefix="shoal-pull-bench-", dir="/var/tmp")
    try:
        layout, size = make_layout(tmp)
        ref = f"{host}/bench/image:bench"
        push(layout, "bench", ref)
        skopeo, unpacked, shoal = [], [], []
        copy = ["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}"]
        for i in range(3):
            to_dir = [*copy, f"dir:{tmp}/skopeo-{i}"]
            skopeo.append(timed(lambda: subprocess.run(to_dir, check=True, capture_output=True)))
            storage = f"containers-storage:[overlay@{tmp}/storage-{i}/root+{tmp}/storage-{i}/run]bench:latest"
            unpacked.append(timed(lambda: subprocess.run([*copy, storage], check=True, capture_output=True)))
            store = LayerStore(os.path.join(tmp, f"store-{i}"))
            shoal.append(timed(lambda: asyncio.run(pull(store, ref))))
            # containers-storage leaves its overlay mounts behind
            subprocess.run(["umount", "-R", f"{tmp}/storage-{i}/root/overlay"], capture_output=True)
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    mb = size / 1e6
    result = {
        "compressed_mb": round(mb, 1),
        "skopeo_dir_s": round(min(skopeo), 2),
        "skopeo_storage_s": round(min(unpacked), 2),
        "shoal_s": round(min(shoal), 2),
        "shoal_vs_skopeo_dir": round(min(skopeo) / min(shoal), 2),
        "shoal_vs_skopeo_storage": round(min(unpacked) / min(shoal), 2),
    }
    print(
        f"pull of a {result['compressed_mb']} MB image from a local registry: shoal {result['shoal_s']} s "
        f"({mb / min(shoal):.1f} MB/s); skopeo copy to dir: {result['skopeo_dir_s']} s "
        f"({mb / min(skopeo):.1f} MB/s, shoal at {result['shoal_vs_skopeo_dir']:.0%}); skopeo copy into "
        f"containers-storage: {result['skopeo_storage_s']} s ({mb / min(unpacked):.1f} MB/s, "
        f"shoal at {result['shoal_vs_skopeo_storage']:.0%})"
    )
    return result


if __name__ == "__main__":
    main()
