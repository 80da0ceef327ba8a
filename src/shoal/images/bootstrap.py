"""Modal's default base image, `python:3.X-slim-<distro>`, built from Debian packages.

Docker Hub cannot be reached, so `Image.debian_slim()`'s `FROM python:3.11.12-slim-bookworm`
cannot be pulled. Debian bookworm ships Python 3.11, so mmdebstrap builds an image that
behaves like the official one (python and pip on PATH, pip installs system-wide,
apt works) from the Debian archive instead. Other versions need a registry.

The image also trusts the host's local CAs (/usr/local/share/ca-certificates): a host
behind a TLS-intercepting proxy installs its CA there, and without it `pip install`
in a build step fails on every HTTPS connection.
"""

import asyncio
import glob
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from urllib.parse import urlparse

from .builder import BuildError, Log
from .spec import BuiltImage, ImageConfig
from .store import LayerStore

# Part of the layer id: change it whenever the recipe below changes what gets built.
RECIPE_VERSION = "shoal-python-base-1"
# The Python series each Debian release ships, i.e. what can be built here.
LOCAL_PYTHON = {"bookworm": "3.11"}
PACKAGES = [
    "python3", "python3-pip", "python3-venv", "python3-dev",  # python:slim has the headers to compile extensions
    "ca-certificates", "netbase", "tzdata",  # also in python:slim
]  # fmt: skip
# Like Debian's slim images: no manuals, docs or translations, in this image or in what it installs later.
DPKG_OPTIONS = [
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOCAL_CA_DIR = "/usr/local/share/ca-certificates"

_REF = re.compile(r"(?:docker\.io/)?(?:library/)?python:(\d+\.\d+(?:\.\d+)?)-slim-([a-z]+)")


@dataclass(frozen=True)
class PythonRef:
    version: str  # as the ref has it: "3.11.12" or "3.11"
    distro: str  # "bookworm"

    @property
    def series(self) -> str:
        return ".".join(self.version.split(".")[:2])


def parse_python_ref(ref: str) -> PythonRef | None:
    """`python:3.11.12-slim-bookworm` -> PythonRef("3.11.12", "bookworm"); None for other images."""
    m = _REF.fullmatch(ref.strip())
    return PythonRef(m.group(1), m.group(2)) if m else None


def buildable_refs() -> str:
    return ", ".join(f"python:{series}-slim-{distro}" for distro, series in LOCAL_PYTHON.items())


async def bootstrap_python_base(store: LayerStore, ref: str, log: Log) -> BuiltImage:
    """The image for `ref`, a python slim ref of a version Debian ships; built once, then cached."""
    parsed = parse_python_ref(ref)
    if parsed is None or LOCAL_PYTHON.get(parsed.distro) != parsed.series:
        raise BuildError(
            f"FROM {ref}",
            reason=f"cannot be built locally: only {buildable_refs()} (any patch version) can be built "
            "from Debian packages; other base images need a container registry (set SHOAL_REGISTRY)",
        )
    local_cas = _local_cas()
    layer_id = _layer_id(parsed, local_cas)
    built = 0
    async with store.building(layer_id) as root:
        if root is None:
            log(f"=> {ref}: cached\n")
        else:
            log(f"=> building {ref} from Debian packages (Python {parsed.series} on {parsed.distro})\n")
            await _mmdebstrap(root, parsed.distro, ref, log)
            await asyncio.to_thread(_finish, root, local_cas)
            built = 1
    version = await asyncio.to_thread(_debian_python_version, store.layer_dir(layer_id), parsed.series)
    config = ImageConfig(
        env={"PATH": PATH, "LANG": "C.UTF-8", "PYTHON_VERSION": version},
        cmd=["python3"],
        python_version=parsed.series,
    )
    return BuiltImage([layer_id], config, built)


def bootstrap_refs() -> list[str]:
    """The python base images this host can build, under their usual names."""
    return [f"python:{series}-slim-{distro}" for distro, series in LOCAL_PYTHON.items()]


def bootstrap_layer_ids() -> set[str]:
    """The layers of the python bases built here (kept by garbage collection: air-gapped hosts need them)."""
    local_cas = _local_cas()
    return {_layer_id(parse_python_ref(ref), local_cas) for ref in bootstrap_refs()}


def _layer_id(parsed: PythonRef, local_cas: list[tuple[str, bytes]]) -> str:
    # The patch version is not in the recipe: Debian has one Python 3.11, whatever the ref asks for.
    ca_digest = hashlib.sha256(b"".join(content for _, content in local_cas)).hexdigest()
    recipe = [RECIPE_VERSION, parsed.distro, parsed.series, PACKAGES, DPKG_OPTIONS, ca_digest]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()


async def _mmdebstrap(root: str, distro: str, ref: str, log: Log) -> None:
    if shutil.which("mmdebstrap") is None:
        raise BuildError(f"FROM {ref}", reason="needs mmdebstrap to build it locally (apt-get install mmdebstrap)")
    main, security = debian_mirrors()
    argv = [
        "mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
        *[f"--dpkgopt={option}" for option in DPKG_OPTIONS],
        distro, root,
        f"deb {main} {distro} main", f"deb {main} {distro}-updates main", f"deb {security} {distro}-security main",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    tail: list[str] = []
    async for line in proc.stdout:
        text = line.decode(errors="replace")
        tail = (tail + [text.rstrip("\n")])[-30:]
        log(text)
    if await proc.wait() != 0:
        raise BuildError(f"FROM {ref}", "\n".join(tail), f"failed: mmdebstrap exited with code {proc.returncode}")


def _finish(root: str, local_cas: list[tuple[str, bytes]]) -> None:
    """Make the Debian tree behave like python:slim (and trust the host's local CAs)."""
    # pip installs system-wide there; Debian's marker would refuse (PEP 668).
    for marker in glob.glob(os.path.join(root, "usr/lib/python3*/EXTERNALLY-MANAGED")):
        os.unlink(marker)
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        os.symlink(target, os.path.join(root, "usr/local/bin", name))
    # mmdebstrap leaves the host's copies; containers get theirs mounted over these.
    for name in ("etc/resolv.conf", "etc/hostname"):
        with open(os.path.join(root, name), "w"):
            pass
        os.chmod(os.path.join(root, name), 0o644)
    for pattern in ("var/lib/apt/lists/*_*", "var/cache/apt/*.bin", "var/log/*.log", "var/log/apt/*",
                    "var/cache/debconf/*-old", "var/lib/dpkg/*-old"):  # fmt: skip
        for path in glob.glob(os.path.join(root, pattern)):
            os.unlink(path)
    # Where update-ca-certificates finds them again if apt reruns it later, and in the bundle now.
    for rel, content in local_cas:
        path = os.path.join(root, LOCAL_CA_DIR.lstrip("/"), rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
    if local_cas:
        with open(os.path.join(root, "etc/ssl/certs/ca-certificates.crt"), "ab") as bundle:
            bundle.write(b"".join(content.rstrip(b"\n") + b"\n" for _, content in local_cas))


def _local_cas() -> list[tuple[str, bytes]]:
    """The host's own CA certificates: (path under LOCAL_CA_DIR, PEM), in a stable order."""
    found = []
    for path in sorted(glob.glob(os.path.join(LOCAL_CA_DIR, "**", "*.crt"), recursive=True)):
        with open(path, "rb") as f:
            found.append((os.path.relpath(path, LOCAL_CA_DIR), f.read()))
    return found


def _debian_python_version(root: str, series: str) -> str:
    """The upstream version of the installed python3.X package, e.g. "3.11.2"."""
    with open(os.path.join(root, "var/lib/dpkg/status")) as f:
        for stanza in f.read().split("\n\n"):
            if re.search(rf"^Package: python{re.escape(series)}$", stanza, re.M):
                if m := re.search(r"^Version: ([0-9.]+)", stanza, re.M):
                    return m.group(1)
    return series


def debian_mirrors() -> tuple[str, str]:
    """The Debian archive and security archive the host's apt uses, else deb.debian.org."""
    main = security = None
    for uri in _apt_source_uris():
        path = urlparse(uri).path.rstrip("/")
        if path.endswith("/debian-security"):
            security = security or uri.rstrip("/")
        elif path.endswith("/debian"):
            main = main or uri.rstrip("/")
    return main or DEFAULT_MIRROR, security or DEFAULT_SECURITY_MIRROR


def _apt_source_uris() -> list[str]:
    uris = []
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        for line in _read(path).splitlines():
            words = [w for w in re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()]
            if len(words) >= 2 and words[0] == "deb":
                uris.append(words[1])
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", _read(path)):
            fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes").lower() != "no":
                uris += fields.get("URIs", "").split()
    return [uri for uri in uris if uri.startswith(("http://", "https://"))]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""
