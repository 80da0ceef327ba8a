"""The client mount: the modal client that containers run their entrypoint with.

Containers start `python -m modal._container_entrypoint` with PYTHONPATH=/pkg, so the
client must be the one the user deployed with, whatever the image holds. /pkg has
modal itself; its dependencies go to /__modal/deps, which pkg/sitecustomize.py puts
at the *end* of sys.path so that the image's own packages (say, another protobuf) win.
"""

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable

# Distributions that go to /pkg; everything they depend on goes to /__modal/deps.
PKG_DISTRIBUTIONS = {"modal", "synchronicity"}
DEPS_DIR = "/__modal/deps"
SITECUSTOMIZE = f"import sys; sys.path.append({DEPS_DIR!r})\n"


def ensure_client_pkg(root: str, python_version: str) -> str:
    """A directory to stack as an overlay lower dir, holding pkg/ and __modal/deps/ for this Python.

    Built once per modal version and Python version; blocking (run it in a thread).
    """
    series = ".".join(python_version.split(".")[:2])
    modal_version = importlib.metadata.version("modal")
    final = os.path.join(root, "client", modal_version, "cp" + series.replace(".", ""))
    if os.path.isdir(final):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(final))
    try:
        if series == "%d.%d" % sys.version_info[:2]:
            _copy_distributions(_requirement_closure("modal"), tmp)
        else:
            _pip_install(tmp, series, modal_version)
        with open(os.path.join(tmp, "pkg", "sitecustomize.py"), "w") as f:
            f.write(SITECUSTOMIZE)
        os.chmod(tmp, 0o755)
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(final):  # else another thread or process finished it first
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_closure(name: str) -> list[importlib.metadata.Distribution]:
    """The installed distribution `name` and everything it requires, recursively.

    Requirements that are not installed are skipped: for this interpreter their markers
    (python_version < "3.11", ...) are false. Extras are never wanted.
    """
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = _normalize(todo.pop())
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(key)
        except importlib.metadata.PackageNotFoundError:
            continue
        found[key] = dist
        for requirement in dist.requires or []:
            if not re.search(r"\bextra\s*==", requirement):
                todo.append(re.match(r"[A-Za-z0-9._-]+", requirement).group())
    return list(found.values())


def _copy_distributions(dists: Iterable[importlib.metadata.Distribution], dest: str) -> None:
    """Copy each distribution's files (its RECORD) into dest/pkg or dest/__modal/deps."""
    for dist in dists:
        name = _normalize(dist.metadata["Name"])
        side = os.path.join(dest, "pkg" if name in PKG_DISTRIBUTIONS else DEPS_DIR.lstrip("/"))
        if dist.files is None:
            raise RuntimeError(f"{name} has no RECORD; cannot tell which files are its own")
        site = str(dist.locate_file(""))
        for file in dist.files:
            rel = os.path.normpath(str(file))
            if rel.startswith("..") or os.path.isabs(rel):
                continue  # console scripts and data installed outside site-packages
            src = os.path.join(site, rel)
            if not os.path.isfile(src):
                continue  # RECORD may list byte-code that was never written
            os.makedirs(os.path.dirname(os.path.join(side, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(side, rel))


def _pip_install(dest: str, series: str, modal_version: str) -> None:
    """Install this modal version's wheels for another Python, then split them like the host's."""
    site = os.path.join(dest, ".site")
    arch = platform.machine()
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", site, "--python-version", series, "--implementation", "cp", "--only-binary=:all:",
            # The first tag pip can use wins: prefer wheels that run on the oldest glibc.
            "--platform", f"manylinux2014_{arch}", "--platform", f"manylinux_2_28_{arch}",
            f"modal=={modal_version}",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise RuntimeError(f"pip could not install modal=={modal_version} for Python {series}:\n{tail}")
    _copy_distributions(importlib.metadata.distributions(path=[site]), dest)
    shutil.rmtree(site)
