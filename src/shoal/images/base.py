"""Where `FROM <image>` comes from: an image imported from this machine's files under that
name, else an OCI registry when one is configured, otherwise shoal's own bootstrap from Debian
packages (no Docker Hub needed), and uv's image from its PyPI wheel.
"""

import asyncio
import os
import re
from collections.abc import Callable

from .bootstrap import bootstrap_python_base, parse_python_ref
from .builder import BuildError
from .imported import imported
from .registry import RegistryAuth, RegistryError, pull
from .spec import BuiltImage
from .store import LayerStore
from .uv_image import uv_image, uv_version

_MICROMAMBA = re.compile(r"(?:docker\.io/)?mambaorg/micromamba[:@]")


def registry_mirrors() -> dict[str, str]:
    """SHOAL_REGISTRY_MIRRORS="docker.io=localhost:5000,ghcr.io=mirror:5000"; SHOAL_REGISTRY is docker.io's."""
    mirrors = {}
    for pair in filter(None, os.environ.get("SHOAL_REGISTRY_MIRRORS", "").split(",")):
        source, _, target = pair.partition("=")
        mirrors[source.strip()] = target.strip()
    if registry := os.environ.get("SHOAL_REGISTRY"):
        mirrors.setdefault("docker.io", registry)
    return mirrors


class BaseResolver:
    def __init__(self, store: LayerStore):
        self.store = store

    async def __call__(self, ref: str, log_text: Callable[[str], None], auth: RegistryAuth | None = None) -> BuiltImage:
        if image := await asyncio.to_thread(imported, self.store, ref):
            log_text(f"{ref}: imported on this machine\n")
            return image
        mirrors = registry_mirrors()
        if uv_version(ref) and "ghcr.io" not in mirrors:
            return await uv_image(self.store, ref, log_text)
        python_base = parse_python_ref(ref) is not None
        if mirrors or not python_base:
            try:
                return await pull(self.store, ref, mirrors=mirrors, log=log_text, auth=auth)
            except RegistryError as e:
                if _MICROMAMBA.match(ref):
                    raise BuildError(
                        f"FROM {ref}",
                        reason=f"failed: Image.micromamba() needs {ref} from a container registry ({e}); "
                        "micromamba is packaged neither by Debian nor on PyPI, so shoal cannot build it locally. "
                        "Set SHOAL_REGISTRY to a registry (or mirror) that has it",
                    ) from e
                if not python_base:
                    raise
                log_text(f"registry pull of {ref} failed ({e}); building it from Debian packages instead\n")
        return await bootstrap_python_base(self.store, ref, log_text)
