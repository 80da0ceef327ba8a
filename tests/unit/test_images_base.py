"""Where FROM comes from: the configured registry first, Debian's bootstrap for the python base."""

import pytest

from shoal.images import base
from shoal.images.registry import RegistryError
from shoal.images.spec import BuiltImage, ImageConfig
from shoal.images.store import LayerStore


@pytest.fixture
def calls(monkeypatch):
    seen = []

    async def pull(store, ref, *, mirrors, log, auth=None):
        seen.append(("pull", ref, mirrors))
        if mirrors.get("docker.io") == "unreachable:5000":
            raise RegistryError("cannot reach registry unreachable:5000")
        return BuiltImage(["pulled"], ImageConfig())

    async def bootstrap(store, ref, log):
        seen.append(("bootstrap", ref))
        return BuiltImage(["bootstrapped"], ImageConfig())

    monkeypatch.setattr(base, "pull", pull)
    monkeypatch.setattr(base, "bootstrap_python_base", bootstrap)
    monkeypatch.delenv("SHOAL_REGISTRY", raising=False)
    monkeypatch.delenv("SHOAL_REGISTRY_MIRRORS", raising=False)
    return seen


@pytest.fixture
def resolver(tmp_path):
    return base.BaseResolver(LayerStore(str(tmp_path)))


def test_mirrors_from_environment(monkeypatch):
    monkeypatch.setenv("SHOAL_REGISTRY_MIRRORS", "ghcr.io=mirror:5000, quay.io=other:5000")
    monkeypatch.setenv("SHOAL_REGISTRY", "localhost:5000")
    assert base.registry_mirrors() == {"ghcr.io": "mirror:5000", "quay.io": "other:5000", "docker.io": "localhost:5000"}


async def test_python_base_is_bootstrapped_without_a_registry(resolver, calls):
    built = await resolver("python:3.11.12-slim-bookworm", print)
    assert built.layers == ["bootstrapped"] and calls == [("bootstrap", "python:3.11.12-slim-bookworm")]


async def test_other_images_are_pulled(resolver, calls):
    built = await resolver("ghcr.io/org/tool:1", print)
    assert built.layers == ["pulled"] and calls[0][:2] == ("pull", "ghcr.io/org/tool:1")


async def test_configured_registry_is_used_for_the_python_base(resolver, calls, monkeypatch):
    monkeypatch.setenv("SHOAL_REGISTRY", "localhost:5000")
    built = await resolver("python:3.11-slim-bookworm", print)
    assert built.layers == ["pulled"] and calls == [
        ("pull", "python:3.11-slim-bookworm", {"docker.io": "localhost:5000"})
    ]


async def test_unreachable_registry_falls_back_to_the_bootstrap(resolver, calls, monkeypatch):
    monkeypatch.setenv("SHOAL_REGISTRY", "unreachable:5000")
    logs = []
    built = await resolver("python:3.11-slim-bookworm", logs.append)
    assert built.layers == ["bootstrapped"]
    assert "building it from Debian packages instead" in "".join(logs)


async def test_unreachable_registry_is_an_error_for_other_images(resolver, calls, monkeypatch):
    monkeypatch.setenv("SHOAL_REGISTRY", "unreachable:5000")
    with pytest.raises(RegistryError, match="cannot reach"):
        await resolver("someone/app:1", print)
