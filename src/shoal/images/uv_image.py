"""`ghcr.io/astral-sh/uv:<version>` without ghcr.io: the uv binary from its PyPI wheel.

`Image.uv_pip_install` copies `/uv` out of that image (`COPY --from=ghcr.io/astral-sh/uv:...`).
When no mirror serves ghcr.io, the same binary comes from the `uv` wheel on PyPI, the
package index build hosts reach anyway. `latest` is whatever PyPI's latest was the first
time it was asked for; pin `uv_version=` for a chosen one.
"""

import asyncio
import hashlib
import json
import os
import re
import sys
import tempfile
import zipfile

from .builder import DEFAULT_PATH, BuildError, Log
from .spec import BuiltImage, ImageConfig
from .store import LayerStore

RECIPE_VERSION = "shoal-uv-image-1"
_REF = re.compile(r"ghcr\.io/astral-sh/uv:(latest|\d+(?:\.\d+)*)")
_BINARIES = ("uv", "uvx")


def uv_version(ref: str) -> str | None:
    """`ghcr.io/astral-sh/uv:0.8.3` -> "0.8.3" ("latest" for latest); None for other images."""
    m = _REF.fullmatch(ref.strip())
    return m.group(1) if m else None


async def uv_image(store: LayerStore, ref: str, log: Log) -> BuiltImage:
    version = uv_version(ref)
    layer_id = hashlib.sha256(json.dumps([RECIPE_VERSION, version]).encode()).hexdigest()
    async with store.building(layer_id) as root:
        if root is None:
            log(f"=> {ref}: cached\n")
        else:
            log(f"=> {ref}: the uv binary from PyPI's uv wheel\n")
            with tempfile.TemporaryDirectory() as download:
                wheel = await _download(version, download, ref, log)
                await asyncio.to_thread(_extract, wheel, root)
    return BuiltImage([layer_id], ImageConfig(env={"PATH": DEFAULT_PATH}, entrypoint=["/uv"]))


async def _download(version: str, dest: str, ref: str, log: Log) -> str:
    requirement = "uv" if version == "latest" else f"uv=={version}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "-d", dest, requirement,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await proc.communicate()
    text = output.decode(errors="replace")
    log(text)
    wheels = [name for name in os.listdir(dest) if name.endswith(".whl")]
    if proc.returncode != 0 or not wheels:
        raise BuildError(f"COPY --from={ref}", text[-2000:], f"failed: cannot download {requirement} from PyPI")
    return os.path.join(dest, wheels[0])


def _extract(wheel: str, root: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            parts = info.filename.split("/")
            if len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts" and parts[2] in _BINARIES:
                target = os.path.join(root, parts[2])
                with z.open(info) as src, open(target, "wb") as out:
                    out.write(src.read())
                os.chmod(target, 0o755)
    if not os.path.exists(os.path.join(root, "uv")):
        raise BuildError(
            "COPY --from=ghcr.io/astral-sh/uv", reason=f"failed: no uv binary in {os.path.basename(wheel)}"
        )
