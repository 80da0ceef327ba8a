import asyncio
import os
import time

import pytest

from shoal.images import store as store_mod
from shoal.images.spec import BuiltImage, ImageConfig
from shoal.images.store import LayerStore


async def test_building_renames_into_place(tmp_path):
    store = LayerStore(str(tmp_path))
    assert not store.has("l1")
    async with store.building("l1") as tmp:
        assert os.path.isdir(tmp) and tmp != store.layer_dir("l1")
        assert os.stat(tmp).st_mode & 0o777 == 0o755
        open(os.path.join(tmp, "f"), "w").close()
    assert store.has("l1")
    assert store.layer_dir("l1") == str(tmp_path / "layers" / "l1")
    assert os.listdir(store.layer_dir("l1")) == ["f"]
    assert os.listdir(tmp_path / "tmp") == []
    async with store.building("l1") as again:
        assert again is None  # exists: nothing to build


async def test_failure_caches_nothing(tmp_path):
    store = LayerStore(str(tmp_path))
    with pytest.raises(RuntimeError):
        async with store.building("l1") as tmp:
            open(os.path.join(tmp, "f"), "w").close()
            raise RuntimeError("step failed")
    assert not store.has("l1")
    assert os.listdir(tmp_path / "tmp") == []


async def test_a_build_cancelled_while_its_layer_is_hashed_leaves_nothing(tmp_path, monkeypatch):
    """As a pull cancels a layer that finished downloading when another of the image's failed."""
    hashing = asyncio.Event()
    real_scan = store_mod.scan

    def slow_scan(root):
        loop.call_soon_threadsafe(hashing.set)
        time.sleep(0.2)
        return real_scan(root)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(store_mod, "scan", slow_scan)
    store = LayerStore(str(tmp_path))

    async def build():
        async with store.building("l1") as tmp:
            open(os.path.join(tmp, "f"), "w").close()

    task = asyncio.create_task(build())
    await hashing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not store.has("l1")
    assert os.listdir(tmp_path / "tmp") == []


async def test_concurrent_builders_of_one_layer_build_it_once(tmp_path):
    store = LayerStore(str(tmp_path))
    runs = []

    async def build(tag):
        async with store.building("same") as tmp:
            if tmp is not None:
                runs.append(tag)
                await asyncio.sleep(0.05)
                open(os.path.join(tmp, tag), "w").close()

    await asyncio.gather(build("a"), build("b"), build("c"))
    assert len(runs) == 1
    assert os.listdir(store.layer_dir("same")) == runs


async def test_rebuild_replaces_the_layer(tmp_path):
    store = LayerStore(str(tmp_path))
    for name in ("old", "new"):
        async with store.building("l1", rebuild=True) as tmp:
            open(os.path.join(tmp, name), "w").close()
    assert os.listdir(store.layer_dir("l1")) == ["new"]
    # The old copy waits in the trash (a running container may use it) until the store is reopened
    # by a later process.
    assert len(os.listdir(tmp_path / "trash")) == 1


def test_abandoned_work_of_dead_processes_is_removed(tmp_path):
    LayerStore(str(tmp_path))
    dead = tmp_path / "tmp" / "999999999-abc"  # no such pid
    live = tmp_path / "tmp" / f"{os.getppid()}-abc"
    old = tmp_path / "trash" / "999999999-x"
    for path in (dead, live, old):
        path.mkdir()
    LayerStore(str(tmp_path))
    assert not dead.exists() and not old.exists()
    assert live.exists()


def test_built_image_json_round_trip():
    image = BuiltImage(
        ["a", "b"],
        ImageConfig(
            env={"PATH": "/usr/bin", "X": "1"},
            workdir="/app",
            user="app",
            entrypoint=["tini", "--"],
            cmd=["python3"],
            shell=["/bin/bash", "-c"],
            python_version="3.11",
        ),
        built=2,
    )
    assert BuiltImage.from_json(image.to_json()) == image
    assert BuiltImage.from_dict(image.to_dict()) == image
    minimal = BuiltImage.from_dict({"layers": [], "config": {"env": {}}})
    assert minimal.config.shell == ["/bin/sh", "-c"] and minimal.config.workdir == "/" and minimal.built == 0


# -- garbage collection --------------------------------------------------------------


async def commit(store: LayerStore, layer_id: str, files: dict[str, bytes]) -> None:
    async with store.building(layer_id) as root:
        for name, content in files.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(content)
            os.utime(os.path.join(root, name), ns=(0, 0))


def keeping(*layers: str):
    async def live() -> set[str]:
        return set(layers)

    return live


async def test_collect_removes_unkept_layers_and_files_only_they_name(tmp_path):
    store = LayerStore(str(tmp_path))
    await commit(store, "base", {"shared": b"s" * 100, "base-only": b"b"})
    await commit(store, "kept", {"shared": b"s" * 100, "mine": b"k"})
    await commit(store, "gone", {"shared": b"s" * 100, "theirs": b"g" * 50})
    collected = await store.collect(keeping("base", "kept"))
    assert (collected.layers, collected.files, collected.bytes) == (1, 1, 50)
    assert store.layer_ids() == ["base", "kept"]
    assert not os.path.exists(store.layer_dir("gone"))
    assert store.files.usage().count == 3  # shared, base-only, mine
    assert os.listdir(tmp_path / "trash") == []
    # What is kept can still be made again from its manifest.
    os.rename(store.layer_dir("kept"), str(tmp_path / "aside"))
    await store.ensure(["kept"])
    assert sorted(os.listdir(store.layer_dir("kept"))) == ["mine", "shared"]


async def test_collect_keeps_what_a_container_holds(tmp_path):
    store = LayerStore(str(tmp_path))
    await commit(store, "l", {"f": b"data"})
    lease = await store.hold(["l"])
    assert (await store.collect(keeping())).layers == 0
    assert store.has("l") and os.path.isdir(store.layer_dir("l"))
    await store.release(lease)
    assert (await store.collect(keeping())).layers == 1
    assert not store.has("l") and store.files.usage().count == 0


async def test_collect_during_a_build_keeps_its_layers(tmp_path):
    store = LayerStore(str(tmp_path))
    await commit(store, "base", {"f": b"base"})
    in_step = asyncio.Event()
    finish = asyncio.Event()

    async def build() -> None:
        async with store.lease():
            assert await store.use(["base"])
            await commit(store, "step1", {"g": b"one"})
            async with store.building("step2") as root:
                in_step.set()
                await finish.wait()  # a RUN step going on
                open(os.path.join(root, "h"), "w").close()

    task = asyncio.create_task(build())
    await in_step.wait()
    assert (await store.collect(keeping())).layers == 0  # nothing the build made or uses goes
    assert store.layer_ids() == ["base", "step1"]
    finish.set()
    await task
    assert (await store.collect(keeping("step2"))).layers == 2  # the build is over: its lease too
    assert store.layer_ids() == ["step2"]


async def test_a_collected_base_is_reported_to_the_build(tmp_path):
    store = LayerStore(str(tmp_path))
    await commit(store, "base", {"f": b"base"})
    await store.collect(keeping())
    async with store.lease():
        assert not await store.use(["base"])
