"""Pulling an image from a local registry: shoal's pull against `skopeo copy`, side by side.

The image is made here from real files of this host (/usr/lib/python3.11, /usr/share/locale,
/usr/lib/python3/dist-packages; about 100 MB gzip-compressed), one layer each, pushed to
Debian's docker-registry on loopback.
skopeo copies it to a directory (download and digest check only); shoal pulls it into a
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
        skopeo, shoal = [], []
        for i in range(3):
            dest = os.path.join(tmp, f"skopeo-{i}")
            copy = [
                "skopeo",
                "--insecure-policy",
                "copy",
                "-q",
                "--src-tls-verify=false",
                f"docker://{ref}",
                f"dir:{dest}",
            ]
            skopeo.append(timed(lambda: subprocess.run(copy, check=True, capture_output=True)))
            store = LayerStore(os.path.join(tmp, f"store-{i}"))
            shoal.append(timed(lambda: asyncio.run(pull(store, ref))))
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    mb = size / 1e6
    result = {
        "compressed_mb": round(mb, 1),
        "skopeo_s": round(min(skopeo), 2),
        "shoal_s": round(min(shoal), 2),
        "skopeo_mb_per_s": round(mb / min(skopeo), 1),
        "shoal_mb_per_s": round(mb / min(shoal), 1),
        "shoal_vs_skopeo": round(min(skopeo) / min(shoal), 2),
    }
    print(
        f"pull of a {result['compressed_mb']} MB image from a local registry: skopeo copy {result['skopeo_s']} s "
        f"({result['skopeo_mb_per_s']} MB/s), shoal {result['shoal_s']} s ({result['shoal_mb_per_s']} MB/s), "
        f"{result['shoal_vs_skopeo']:.0%} of skopeo's throughput"
    )
    return result


if __name__ == "__main__":
    main()
