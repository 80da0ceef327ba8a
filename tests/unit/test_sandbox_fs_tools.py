"""The file tool sandboxes run for `Sandbox.filesystem`: its commands, outputs and error kinds,
run as the client runs it, a process given one JSON command."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "src" / "shoal" / "worker" / "sandbox_fs_tools.py"


def tool(command: str, args: dict, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), json.dumps({command: args})], input=stdin, capture_output=True, timeout=30
    )


def error_kind(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1
    return json.loads(done.stderr)["error_kind"]


def test_write_creates_parents_and_read_returns_the_bytes(tmp_path):
    path = str(tmp_path / "a" / "b" / "f.bin")
    data = bytes(range(256)) * 5000
    assert tool("WriteFile", {"path": path}, data).returncode == 0
    assert tool("ReadFile", {"path": path}).stdout == data


def test_list_and_stat_describe_entries_without_following_symlinks(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("12345")
    os.symlink("file", tmp_path / "link")
    listed = json.loads(tool("ListFiles", {"path": str(tmp_path)}).stdout)
    assert [(e["name"], e["type"]) for e in listed] == [("dir", "directory"), ("file", "file"), ("link", "symlink")]
    info = json.loads(tool("Stat", {"path": str(tmp_path / "link")}).stdout)
    assert info["symlink_target"] == "file" and info["path"] == str(tmp_path / "link")
    info = json.loads(tool("Stat", {"path": str(tmp_path / "file")}).stdout)
    assert (info["size"], info["permissions"][0], info["symlink_target"]) == (5, "-", None)
    assert info["mode"] == os.stat(tmp_path / "file").st_mode & 0o7777


def test_errors_are_named_as_the_client_expects(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert error_kind(tool("ReadFile", {"path": str(tmp_path / "missing")})) == "NotFound"
    assert error_kind(tool("ReadFile", {"path": str(tmp_path)})) == "IsDirectory"
    assert error_kind(tool("ListFiles", {"path": str(tmp_path / "file")})) == "NotDirectory"
    assert error_kind(tool("WriteFile", {"path": str(tmp_path / "file" / "x")}, b"y")) == "NotDirectory"
    assert error_kind(tool("Remove", {"path": str(tmp_path / "full"), "recursive": False})) == "DirectoryNotEmpty"
    assert error_kind(tool("MakeDirectory", {"path": str(tmp_path / "full"), "parents": False})) == "PathAlreadyExists"
    assert error_kind(tool("MakeDirectory", {"path": str(tmp_path / "no" / "d"), "parents": False})) == "NotFound"
    assert error_kind(tool("Bogus", {"path": "/"})) == "NotSupported"


def test_make_directory_with_parents_is_idempotent_and_remove_recursive_empties(tmp_path):
    target = str(tmp_path / "x" / "y")
    assert tool("MakeDirectory", {"path": target, "parents": True}).returncode == 0
    assert tool("MakeDirectory", {"path": target, "parents": True}).returncode == 0
    assert tool("Remove", {"path": str(tmp_path / "x"), "recursive": True}).returncode == 0
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("wanted", [None, ["Create"]])
def test_watch_reports_changes_until_its_timeout(tmp_path, wanted):
    (tmp_path / "old").write_text("x")

    def change() -> None:
        time.sleep(0.5)
        (tmp_path / "new").write_text("y")
        (tmp_path / "old").unlink()

    threading.Thread(target=change).start()
    args = {"path": str(tmp_path), "recursive": False, "filter": wanted, "timeout_secs": 2}
    # stdin is held open: the watch ends at its timeout
    with subprocess.Popen(
        [sys.executable, str(TOOL), json.dumps({"Watch": args})], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as watching:
        out = watching.stdout.read()
        assert watching.wait(timeout=30) == 0
    events = [json.loads(line) for line in out.splitlines()]
    expected = [{"paths": [str(tmp_path / "new")], "event_type": "Create"}]
    if wanted is None:
        expected.append({"paths": [str(tmp_path / "old")], "event_type": "Remove"})
    assert sorted(events, key=str) == sorted(expected, key=str)
