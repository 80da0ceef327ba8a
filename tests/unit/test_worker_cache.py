"""A joined worker's cache: what a collection removes, and what it must leave alone."""

import fcntl
import json
import os
import subprocess
from urllib.parse import quote

import pytest

from shoal.worker.fetched import Fetched, parse_limit

KB = 1024


async def _layer(cache: Fetched, layer_id: str, files: dict[str, bytes], used: float) -> None:
    async with cache.layers.building(layer_id) as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
            os.utime(os.path.join(tmp, name), (1, 1))  # a file-store key includes the mtime
    _used(cache, f"layer:{layer_id}", used)


def _dir(cache: Fetched, relative: str, size: int, used: float) -> None:
    os.makedirs(os.path.join(cache.dirs, relative))
    with open(os.path.join(cache.dirs, relative, "blob"), "wb") as f:
        f.write(b"d" * size)
    _used(cache, f"dir:{relative}", used)


def _used(cache: Fetched, name: str, when: float) -> None:
    marker = os.path.join(cache._used, quote(name, safe=""))
    open(marker, "a").close()
    os.utime(marker, (when, when))


@pytest.fixture
async def cache(tmp_path):
    cache = Fetched(str(tmp_path), channel=None, metadata=[], limit=0)
    shared = os.urandom(40 * KB)  # the same content in two layers: stored once
    await _layer(cache, "old", {"shared": shared, "own": os.urandom(10 * KB)}, used=100)
    await _layer(cache, "mid", {"shared": shared, "mine": os.urandom(20 * KB)}, used=200)
    _dir(cache, "mounts/m1", 30 * KB, used=300)
    await _layer(cache, "new", {"big": os.urandom(50 * KB)}, used=400)
    return cache


def _remaining(cache: Fetched) -> set[str]:
    layers = {f"layer:{layer}" for layer in cache.layers.layer_ids() if os.path.isdir(cache.layers.layer_dir(layer))}
    return layers | {f"dir:mounts/{d}" for d in os.listdir(os.path.join(cache.dirs, "mounts"))}


async def test_under_its_limit_nothing_goes(cache):
    cache.limit = 1000 * KB
    assert cache.held is None  # not measured yet
    assert (await cache.collect()).layers == 0
    assert cache.held == 150 * KB
    assert _remaining(cache) == {"layer:old", "layer:mid", "layer:new", "dir:mounts/m1"}


async def test_least_recently_used_go_first_until_the_rest_fits(cache):
    # 150 KB held; removing "old" frees only its own 10 KB ("mid" still names the shared file).
    cache.limit = 130 * KB
    removed = await cache.collect()
    assert (removed.layers, removed.dirs) == (2, 0)
    assert removed.bytes == 10 * KB + 60 * KB  # then "mid": its own file and the shared one
    assert cache.held == 150 * KB - removed.bytes
    assert _remaining(cache) == {"layer:new", "dir:mounts/m1"}
    assert len(cache.layers.files.keys()) == 1  # only "new"'s file is left in the file store
    cache.limit = 0
    await cache.collect()
    assert _remaining(cache) == set()
    assert os.listdir(cache._used) == []


async def test_what_containers_use_stays(cache):
    cache.in_use["ta-here"] = ["layer:old"]
    # Another worker process sharing the cache (alive) and one that is gone.
    other = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(cache._records, f"{other.pid}.json"), "w") as f:
            json.dump({"ta-there": ["dir:mounts/m1"]}, f)
        gone = subprocess.Popen(["true"])
        gone.wait()
        with open(os.path.join(cache._records, f"{gone.pid}.json"), "w") as f:
            json.dump({"ta-lost": ["layer:new"]}, f)
        await cache.collect()
        assert _remaining(cache) == {"layer:old", "dir:mounts/m1"}
        assert not os.path.exists(os.path.join(cache._records, f"{gone.pid}.json"))
    finally:
        other.kill()
        other.wait()


async def test_no_collection_while_a_fetch_is_under_way(cache):
    fd = os.open(cache._lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # as `acquire` holds it while it fetches
        assert await cache.collect() is None
        assert len(_remaining(cache)) == 4
    finally:
        os.close(fd)
    assert (await cache.collect()).layers == 3


async def test_a_failed_fetch_keeps_nothing_in_use(cache):
    with pytest.raises(ValueError, match="outside the control plane's home"):
        await cache.acquire("ta-1", ["layer:old", "dir:../etc"])
    assert cache.in_use == {}
    with open(os.path.join(cache._records, f"{os.getpid()}.json")) as f:
        assert json.load(f) == {}


def test_limits(tmp_path):
    assert parse_limit("20G", str(tmp_path)) == 20 << 30
    assert parse_limit("512m", str(tmp_path)) == 512 << 20
    assert parse_limit("1.5GiB", str(tmp_path)) == int(1.5 * (1 << 30))
    assert parse_limit("1000", str(tmp_path)) == 1000
    fs = os.statvfs(tmp_path)
    assert parse_limit("50%", str(tmp_path)) == fs.f_blocks * fs.f_frsize // 2
    for bad in ("", "lots", "0%", "120%", "-5G"):
        with pytest.raises(ValueError, match="cache limit"):
            parse_limit(bad, str(tmp_path))
