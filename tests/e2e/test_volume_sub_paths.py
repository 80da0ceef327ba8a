"""Volume mounts with sub_path= end to end: a function, a read-only mount and a sandbox that see
one directory of a volume, which is made when missing and can never be outside the volume."""

import json
import os
import uuid

import pytest


def scenario(shoal, name: str, *args: str):
    return json.loads(shoal.python("volume_sub_paths.py", name, *args).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def written(shoal):
    """apps/volume_sub_paths.py run once: x.txt written through a mount of the volume's a/b."""
    return shoal.modal("run", "volume_sub_paths.py").stdout


def test_a_sub_path_mount_shows_that_directory_of_the_volume_alone(shoal, written):
    assert "part ['x.txt']" in written  # only what a/b holds
    assert shoal.modal("volume", "ls", "e2e-sub-paths", "a/b").stdout.split() == ["a/b/x.txt"]
    assert "x.txt" not in shoal.modal("volume", "ls", "e2e-sub-paths", "/").stdout
    assert shoal.modal("volume", "get", "e2e-sub-paths", "a/b/x.txt", "-").stdout.startswith("written in a/b")
    assert "whole written in a/b" in written  # a function mounting the whole volume finds it under a/b


def test_a_read_only_sub_path_mount_is_read_only(written):
    assert "read-only ['written in a/b', 'Read-only file system']" in written


def test_a_missing_sub_path_is_made_when_the_container_starts(shoal, written):
    assert "fresh []" in written
    assert shoal.modal("volume", "ls", "e2e-sub-paths", "made/at").stdout.split() == ["made/at/start"]


def test_a_sandbox_mounts_a_sub_path(shoal, written):
    out = scenario(shoal, "sandbox")
    assert out == {"listed": ["x.txt"], "written": "from sandbox\n"}
    assert "a/b/sb.txt" in shoal.modal("volume", "ls", "e2e-sub-paths", "a/b").stdout


def test_a_sub_path_that_climbs_out_of_the_volume_is_refused(shoal):
    out = scenario(shoal, "escape")
    assert out.startswith("InvalidError") and "must stay inside the volume" in out


def test_a_sub_path_through_a_symlink_a_container_left_is_not_mounted(shoal, written):
    planted = f"/tmp/shoal-sub-path-{uuid.uuid4().hex[:8]}"
    shoal.modal("run", "volume_sub_paths.py::link", "--name", "out", "--target", "/tmp")
    try:
        for sub_path in ("out", f"out/{os.path.basename(planted)}"):
            out = scenario(shoal, "through_link", sub_path)
            assert not out.startswith("ran") and "out is not a directory" in out, out
        assert not os.path.exists(planted)  # nothing was made through the link either
    finally:
        shoal.modal("volume", "rm", "e2e-sub-paths", "out")
