"""What the image store holds, for `shoal images ls` and `shoal images du`."""

import asyncio
import re
from dataclasses import asdict, dataclass

from modal_proto import api_pb2
from sqlalchemy import select

from ..images.spec import BuiltImage
from ..images.store import LayerStore
from ..store import schema as t
from ..store.database import Database


@dataclass
class ImageRow:
    image_id: str
    created_at: float
    status: str
    layer_ids: list[str]  # bottom first
    bytes: int  # its files' bytes, every layer counted in full
    source: str  # what it was built from: a base image id or a registry reference
    step: str  # its last Dockerfile command, or its build function


@dataclass
class Usage:
    images: int
    layers: int
    files: int  # file-store objects
    logical_bytes: int  # every image's files, as if each image were stored on its own
    layer_bytes: int  # each layer's files once: what sharing layers alone would store
    stored_bytes: int  # each file-store object once: what is stored
    dedup_ratio: float  # logical / stored

    def to_dict(self) -> dict:
        return asdict(self)


def _last_step(definition: api_pb2.Image) -> str:
    if definition.HasField("build_function"):
        name = re.search(r"def\s+(\w+)", definition.build_function.definition)
        return f"run_function({name.group(1) if name else '?'})"
    return definition.dockerfile_commands[-1] if definition.dockerfile_commands else ""


async def list_images(db: Database, store: LayerStore) -> list[ImageRow]:
    async with db.tx() as conn:
        rows = (await conn.execute(select(t.images).order_by(t.images.c.created_at))).all()

    def describe() -> list[ImageRow]:
        found = []
        for row in rows:
            definition = api_pb2.Image.FromString(row.definition)
            layers = BuiltImage.from_json(row.built).layers if row.built else []
            size = sum(store.size(layer).bytes for layer in layers if store.has(layer))
            step = _last_step(definition)
            found.append(ImageRow(row.image_id, row.created_at, row.status, layers, size, _source(definition), step))
        return found

    return await asyncio.to_thread(describe)


def _source(definition: api_pb2.Image) -> str:
    """The image a definition starts FROM: a base image's id when it names one, else the reference."""
    bases = {b.docker_tag: b.image_id for b in definition.base_images}
    for command in definition.dockerfile_commands:
        words = command.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            return bases.get(words[1], words[1])
    return ""


async def usage(db: Database, store: LayerStore, image_ids: list[str] | None = None) -> Usage:
    """Sizes over the given images (all ready images when None). Stored bytes of the whole store
    are measured on disk (so files no image uses count too); of some images, from their manifests."""
    async with db.tx() as conn:
        query = select(t.images.c.image_id, t.images.c.built).where(t.images.c.status == "ready")
        if image_ids is not None:
            query = query.where(t.images.c.image_id.in_(image_ids))
        images = [BuiltImage.from_json(row.built) for row in await conn.execute(query)]

    def measure() -> Usage:
        logical = sum(store.size(layer).bytes for image in images for layer in image.layers if store.has(layer))
        if image_ids is None:
            layers = set(store.layer_ids())
            stored = store.files.usage()
            files, stored_bytes = stored.count, stored.bytes
        else:
            layers = {layer for image in images for layer in image.layers if store.has(layer)}
            objects = {e.key: e.size for layer in layers for e in store.manifest(layer).files}
            files, stored_bytes = len(objects), sum(objects.values())
        layer_bytes = sum(store.size(layer).bytes for layer in layers)
        ratio = logical / stored_bytes if stored_bytes else 1.0
        return Usage(len(images), len(layers), files, logical, layer_bytes, stored_bytes, round(ratio, 3))

    return await asyncio.to_thread(measure)
