"""What a build container's upper dir keeps when it becomes a layer.

A `run_function` step runs the client runtime in the image being built, with the
client package and the app's code mounts stacked above the image and the worker's
own mount points inside it. Their traces in the upper dir (mount points, the
`__pycache__` of mounted modules) belong to that container, not to the image.
"""

import glob
import os
import posixpath
import shutil

from .layers import LayerView


def drop_runtime_files(upper: str, image: LayerView, runtime_dirs: list[str], mount_points: tuple[str, ...]) -> None:
    """Remove from `upper` what `runtime_dirs` and `mount_points` brought in and the image does not have."""
    for point in mount_points:
        _drop_new(upper, image, point)
    for runtime_dir in runtime_dirs:
        for root, dirs, files in os.walk(runtime_dir):
            rel = "/" + os.path.relpath(root, runtime_dir).removeprefix(".").lstrip("/")
            for name in list(dirs):
                path = posixpath.join(rel, name)
                if not image.entry(path):
                    _drop_new(upper, image, path)
                    dirs.remove(name)
            for name in files:
                path = posixpath.join(rel, name)
                if not image.entry(path):
                    _drop_new(upper, image, path)
                if name.endswith(".py"):
                    cache = posixpath.join(rel, "__pycache__")
                    for pyc in glob.glob(glob.escape(upper + cache) + f"/{glob.escape(name[:-3])}.*.pyc"):
                        os.unlink(pyc)
                    _drop_new(upper, image, cache, only_if_empty=True)


def _drop_new(upper: str, image: LayerView, path: str, only_if_empty: bool = False) -> None:
    """Remove `path` from `upper` unless the image has it, then its parents the image lacks and that are left empty."""
    target = upper + path
    if image.entry(path) or not os.path.lexists(target):
        return
    if os.path.isdir(target) and not os.path.islink(target):
        if only_if_empty:
            if os.listdir(target):
                return
            os.rmdir(target)
        else:
            shutil.rmtree(target)
    else:
        os.unlink(target)
    parent = posixpath.dirname(path)
    while parent != "/" and not image.entry(parent) and os.path.isdir(upper + parent):
        if os.listdir(upper + parent):
            break
        os.rmdir(upper + parent)
        parent = posixpath.dirname(parent)
