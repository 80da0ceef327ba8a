"""Volumes end to end: `modal volume` and the Volume API, functions that mount a volume,
and a volume's files after a restart."""

import json
import os

import pytest
from conftest import APPS


@pytest.fixture(scope="module")
def data(shoal):
    """The named volume apps/volumes.py mounts, with a file a function wrote and one the CLI put."""
    proc = shoal.modal("run", "volumes.py::main", "--name", "notes/a.txt", "--text", "written in a container")
    assert "listed ['notes']" in proc.stdout
    assert "read written in a container" in proc.stdout
    shoal.modal("volume", "put", "e2e-data", "data.txt", "/in/data.txt")
    return proc


def test_a_function_writes_a_volume_that_another_function_and_the_cli_read(shoal, data):
    assert "notes/a.txt" in shoal.modal("volume", "ls", "e2e-data", "notes").stdout
    assert shoal.modal("volume", "get", "e2e-data", "notes/a.txt", "-").stdout.startswith("written in a container")
    local = shoal.home / "volume-get"
    local.mkdir()
    shoal.modal("volume", "get", "e2e-data", "/in", str(local))
    put = (APPS / "data.txt").read_text()
    assert (local / "in" / "data.txt").read_text() == put
    assert put in shoal.modal("run", "volumes.py::show", "--name", "in/data.txt").stdout


def test_a_read_only_mount_cannot_be_written(data):
    assert "read-only Read-only file system" in data.stdout


def test_the_volume_api_from_a_script_and_a_mount_given_by_with_options(shoal):
    out = json.loads(shoal.python("volumes.py", "api").stdout.strip().splitlines()[-1])
    assert out["listed"] == [
        ["x", "DIRECTORY", out["listed"][0][2]],
        ["x/copy.txt", "FILE", 3],
        ["x/one.txt", "FILE", 3],
        ["x/two.bin", "FILE", 15_000_000],
    ]
    assert out["two"] == 15_000_000  # two 8 MiB blocks, read back whole
    assert out["mounted"] == ["copy.txt", "one.txt", "two.bin"]
    assert out["after_remove"] == []
    assert "/same.txt already exists" in out["exists"]


def test_volume_cli_create_list_cp_rm_rename_delete(shoal):
    shoal.modal("volume", "create", "e2e-cli")
    assert "already exists" in shoal.modal("volume", "create", "e2e-cli", check=False).stderr
    shoal.modal("volume", "put", "e2e-cli", "data.txt", "/a.txt")
    put_again = shoal.modal("volume", "put", "e2e-cli", "data.txt", "/a.txt", check=False)
    assert put_again.returncode != 0 and "already exists" in put_again.stdout + put_again.stderr
    shoal.modal("volume", "put", "--force", "e2e-cli", "data.txt", "/a.txt")
    shoal.modal("volume", "cp", "e2e-cli", "/a.txt", "/b.txt")
    assert shoal.modal("volume", "ls", "e2e-cli").stdout.split() == ["a.txt", "b.txt"]
    removed_dir = shoal.modal("volume", "rm", "e2e-cli", "/", check=False)
    assert removed_dir.returncode != 0
    shoal.modal("volume", "rm", "e2e-cli", "/a.txt")
    missing = shoal.modal("volume", "get", "e2e-cli", "/a.txt", "-", check=False)
    assert missing.returncode != 0 and "No such file or directory: /a.txt" in missing.stdout + missing.stderr
    shoal.modal("volume", "rename", "--yes", "e2e-cli", "e2e-cli-renamed")
    names = [v["name"] for v in json.loads(shoal.modal("volume", "list", "--json").stdout)]
    assert "e2e-cli-renamed" in names and "e2e-cli" not in names
    shoal.modal("volume", "delete", "--yes", "e2e-cli-renamed")
    gone = shoal.modal("volume", "ls", "e2e-cli-renamed", check=False)
    assert gone.returncode != 0 and "not found" in gone.stdout + gone.stderr


def test_a_path_that_climbs_out_of_a_volume_is_refused(shoal, data):
    proc = shoal.modal("volume", "ls", "e2e-data", "../..", check=False)
    assert proc.returncode != 0 and "may not contain '..'" in proc.stdout + proc.stderr


def test_a_symlink_a_container_left_in_a_volume_is_not_followed_by_the_server(shoal, data):
    """A container can put any symlink in a volume; the server must not read through it."""
    secret = shoal.home / "server.secret"
    shoal.modal("run", "volumes.py::link", "--name", "leak", "--target", str(secret))
    read = json.loads(shoal.python("volumes.py", "read_file", "leak").stdout.strip().splitlines()[-1])
    assert read == "InvalidError: leak is not a regular file"
    shoal.modal("run", "volumes.py::link", "--name", "escape", "--target", "/")
    proc = shoal.modal("volume", "put", "e2e-data", "data.txt", "/escape/tmp/planted.txt", check=False)
    assert proc.returncode != 0 and "escape is not a directory" in proc.stdout + proc.stderr
    assert not os.path.exists("/tmp/planted.txt")
    shoal.modal("volume", "rm", "e2e-data", "leak")
    shoal.modal("volume", "rm", "e2e-data", "escape")
    assert secret.exists()


def test_volumes_and_their_files_survive_a_restart(shoal, data):
    shoal.down()
    shoal.up()
    assert shoal.modal("volume", "get", "e2e-data", "notes/a.txt", "-").stdout.startswith("written in a container")
    assert "read written in a container" in shoal.modal("run", "volumes.py::show", "--name", "notes/a.txt").stdout
