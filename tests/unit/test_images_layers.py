import os

from test_images_support import require

from shoal.images.builder import detect_python_version
from shoal.images.layers import LayerView


def make(root, files: dict[str, str]) -> str:
    """A layer dir; values: file content, '->target' for a symlink, 'WHITEOUT', 'DIR', 'OPAQUE'."""
    os.makedirs(root, exist_ok=True)
    for rel, what in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if what == "WHITEOUT":
            os.mknod(path, 0o600 | 0o020000, os.makedev(0, 0))
        elif what in ("DIR", "OPAQUE"):
            os.makedirs(path, exist_ok=True)
            if what == "OPAQUE":
                os.setxattr(path, "trusted.overlay.opaque", b"y")
        elif what.startswith("->"):
            os.symlink(what[2:], path)
        else:
            with open(path, "w") as f:
                f.write(what)
    return str(root)


def test_view_follows_overlay_rules(tmp_path):
    require()
    bottom = make(tmp_path / "1", {
        "usr/bin/python3.11": "", "usr/bin/python3": "->python3.11", "bin": "->usr/bin",
        "etc/a": "a1", "etc/b": "b1", "etc/c": "c1", "opt/keep/x": "x", "opt/gone/y": "y", "file-then-dir": "f",
    })  # fmt: skip
    top = make(tmp_path / "2", {
        "etc/a": "a2", "etc/b": "WHITEOUT", "opt/keep": "OPAQUE", "opt/keep/new": "n", "opt/gone": "WHITEOUT",
        "file-then-dir/inside": "i", "usr/local/bin/python": "/usr/bin/python3",
    })  # fmt: skip
    view = LayerView([bottom, top])
    assert view.read_text("/etc/a") == "a2" and view.read_text("/etc/c") == "c1"
    assert view.read_text("/etc/b") is None
    assert view.listdir("/etc") == ["a", "c"]
    assert view.listdir("/opt") == ["keep"] and view.listdir("/opt/keep") == ["new"]
    assert view.listdir("/file-then-dir") == ["inside"]
    assert view.resolve("/bin/python3")[0] == "/usr/bin/python3.11"
    assert view.resolve("/bin/python3", follow_last=False)[0] == "/usr/bin/python3"
    assert view.resolve("/bin/../etc/a") == ("/usr/etc/a", [])  # /bin/.. is /usr: bin -> usr/bin
    assert view.is_dir("/bin") and not view.is_dir("/etc/a")
    assert view.entry("/bin/python3") == []  # entry never goes through symlinks (they would point at the host)
    assert [rel for rel, _ in view.walk("/opt")] == ["keep", "keep/new"]
    assert detect_python_version(view, None) == "3.11"
