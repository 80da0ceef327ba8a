"""Shared by the image tests (no tests here): a real build-step runner and a tiny base image.

The runner does what the platform's container runtime does for a build step, with
plain tools: an overlay mount of the image's layers plus the step's upper dir, in a
private mount and PID namespace (`unshare`), entered with chroot. It shares the host
network, like build steps do.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

from shoal.images.builder import DEFAULT_PATH
from shoal.images.spec import BuiltImage, ImageConfig
from shoal.images.store import LayerStore


def require(*tools: str) -> None:
    """Tests that need root and host tools say so plainly instead of skipping."""
    problems = [] if os.geteuid() == 0 else ["root (overlay mounts)"]
    problems += [f"`{tool}` on PATH" for tool in tools if shutil.which(tool) is None]
    if problems:
        pytest.fail("this test needs " + " and ".join(problems), pytrace=False)


# Runs inside the new namespaces: mount the rootfs, enter it, exec the step.
_CHILD = r"""
import json, os, pwd, subprocess, sys
spec = json.loads(sys.argv[1])
merged = spec["merged"]
def mount(*args):
    subprocess.run(["mount", *args], check=True)
mount("-t", "overlay", "overlay", "-o",
      "lowerdir=%s,upperdir=%s,workdir=%s,index=off,redirect_dir=off,metacopy=off"
      % (":".join(reversed(spec["lowers"])), spec["upper"], spec["work"]), merged)
if os.path.isdir(merged + "/proc"):
    mount("-t", "proc", "proc", merged + "/proc")
if os.path.isdir(merged + "/dev"):
    mount("--rbind", "/dev", merged + "/dev")
for name in ("etc/resolv.conf", "etc/hosts"):
    if os.path.isfile(os.path.join(merged, name)):
        mount("--bind", "/" + name, os.path.join(merged, name))
os.chroot(merged)
try:
    os.chdir(spec["workdir"])
    if spec["user"]:
        name, _, group = spec["user"].partition(":")
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        os.setgroups([])
        os.setgid(int(group) if group.isdigit() else entry.pw_gid)
        os.setuid(entry.pw_uid)
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
except OSError as e:
    print(f"cannot run {spec['argv']}: {e}", flush=True)
    sys.exit(127)
"""


async def chroot_run_step(lowers, upper, argv, env, workdir, user, log, volumes=()) -> int:
    """A RunStep: the step's writes land in `upper` as an overlayfs upper dir (whiteouts and all);
    it mounts no volumes."""
    work, merged = upper + ".work", upper + ".merged"
    os.makedirs(work)
    os.makedirs(merged)
    spec = dict(lowers=lowers, upper=upper, work=work, merged=merged, argv=argv, env=env, workdir=workdir, user=user)
    try:
        proc = await asyncio.create_subprocess_exec(
            "unshare", "--mount", "--pid", "--fork", "--propagation", "private",
            sys.executable, "-c", _CHILD, json.dumps(spec),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        while chunk := await proc.stdout.read(65536):
            log(chunk.decode(errors="replace"))
        return await proc.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.rmdir(merged)


HOST_TOOLS = ["sh", "ls", "cat", "echo", "mkdir", "rm", "rmdir", "touch", "ln", "mv", "chmod", "id", "date", "sleep"]


async def host_tools_base(store: LayerStore) -> BuiltImage:
    """A tiny merged-/usr image made of the host's sh and coreutils (and their libraries)."""
    async with store.building("host-tools-base") as root:
        if root is not None:
            await asyncio.to_thread(_fill_host_tools, root)
    return BuiltImage(["host-tools-base"], ImageConfig(env={"PATH": DEFAULT_PATH}))


def _fill_host_tools(root: str) -> None:
    for d in ("usr/bin", "usr/lib", "usr/lib64", "etc", "proc", "dev", "tmp", "root", "data/sub", "home/app"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        os.symlink(target, os.path.join(root, link))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "root"), 0o700)
    os.chown(os.path.join(root, "home/app"), 1000, 1000)
    libs = set()
    for tool in HOST_TOOLS:
        path = shutil.which(tool)
        shutil.copy2(path, os.path.join(root, "usr/bin", tool))
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        libs |= {word for word in ldd.split() if word.startswith("/")}
    for lib in libs:  # at the path the loader looks for it; /lib* are symlinks into /usr here
        rel = lib.lstrip("/")
        rel = rel if rel.startswith("usr/") else "usr/" + rel
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        shutil.copy2(os.path.realpath(lib), os.path.join(root, rel))
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        "etc/group": "root:x:0:\napp:x:1000:\nstaff:x:50:\n",
        "data/old.txt": "old\n",
        "data/sub/inner.txt": "inner\n",
        "usr/bin/python3.9": "",  # a stand-in interpreter for Python detection
    }
    for rel, content in files.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(content)
    os.symlink("python3.9", os.path.join(root, "usr/bin/python3"))
