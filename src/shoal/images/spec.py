"""What a built image is: its layers, bottom first, and the config containers start with."""

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ImageConfig:
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    python_version: str | None = None  # "3.11"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageConfig":
        known = {f.name for f in fields(cls)}  # tolerate keys written by other versions
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class BuiltImage:
    layers: list[str]  # layer ids, bottom first
    config: ImageConfig
    built: int = 0  # layers built (not cache hits) by the build that produced this

    def to_dict(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "config": self.config.to_dict(), "built": self.built}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuiltImage":
        return cls(list(data["layers"]), ImageConfig.from_dict(data["config"]), data.get("built", 0))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BuiltImage":
        return cls.from_dict(json.loads(text))
