"""The worker's own mounts of volume sub_paths (worker/sub_paths.py), which runc binds into containers.

Needs root (mount(2)): failing, not skipping, without it keeps a broken host visible."""

import os

import pytest

from shoal.runtime import ContainerError
from shoal.runtime.overlay import mounts_under
from shoal.worker import sub_paths

if os.geteuid() != 0:
    pytest.fail("tests/unit/test_sub_path_mounts.py needs root (bind mounts)", pytrace=False)


@pytest.fixture
def volume(tmp_path):
    root = tmp_path / "volume"
    root.mkdir()
    return root


def test_a_sub_path_is_made_and_mounted_while_the_context_lasts(volume, tmp_path):
    points = tmp_path / "points"
    with sub_paths.sub_path_mount(str(volume), "/users/me", str(points)) as point:
        assert mounts_under(str(points)) == [point]  # (os.path.ismount misses a bind within one file system)
        with open(os.path.join(point, "f.txt"), "w") as f:
            f.write("through the mount")
    assert (volume / "users" / "me" / "f.txt").read_text() == "through the mount"
    assert mounts_under(str(points)) == [] and not os.path.exists(point)  # detached, its point removed


def test_a_sub_path_through_a_symlink_is_not_mounted(volume, tmp_path):
    outside, points = tmp_path / "outside", tmp_path / "points"
    outside.mkdir()
    os.symlink(outside, volume / "link")
    for sub_path in ("link", "link/made"):
        with pytest.raises(ContainerError, match="sub_path '.*': link is not a directory"):
            with sub_paths.sub_path_mount(str(volume), sub_path, str(points)):
                pass
    assert os.listdir(outside) == []
    assert not points.exists() or os.listdir(points) == []
    assert mounts_under(str(points)) == []


def test_mounts_left_by_a_worker_that_stopped_are_detached(volume, tmp_path):
    points = tmp_path / "points"
    left = sub_paths.sub_path_mount(str(volume), "a", str(points))
    point = left.__enter__()  # never left: as if the worker died while starting a container
    assert mounts_under(str(points)) == [point]
    sub_paths.unmount_all(str(points))
    assert mounts_under(str(points)) == [] and not points.exists()
    assert (volume / "a").is_dir()  # the volume keeps the directory
