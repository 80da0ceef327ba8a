"""A throw-away registry (Debian's docker-registry) and hand-made OCI images pushed with skopeo."""

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MTIME = 1_600_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd line: glibc's crypt (libxcrypt) when it does bcrypt, else bcrypt or htpasswd."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # deprecated, still in 3.11 and 3.12

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
        if hashed and hashed.startswith("$2"):
            return f"{user}:{hashed}"
    except ImportError:
        pass
    try:
        import bcrypt

        return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)).decode()}"
    except ImportError:
        pass
    if shutil.which("htpasswd") is None:
        install = "apt-get install -y apache2-utils || (apt-get update && apt-get install -y apache2-utils)"
        subprocess.run(["sh", "-c", install], check=False, capture_output=True)
    out = subprocess.run(["htpasswd", "-nbB", user, password], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class RegistryServer:
    """docker-registry on a free loopback port, storing in a temp dir; optionally htpasswd auth."""

    def __init__(self, users: dict[str, str] | None = None):
        if shutil.which("docker-registry") is None:
            raise RuntimeError("docker-registry is not installed: run `make deps` (Debian package docker-registry)")
        self.dir = tempfile.mkdtemp(prefix="shoal-registry-")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.users = users
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        storage = os.path.join(self.dir, "storage")
        config = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "http:",
            f"  addr: {self.host}",
            "  secret: shoal-test-secret",
        ]
        if self.users:
            path = os.path.join(self.dir, "htpasswd")
            with open(path, "w") as f:
                f.writelines(htpasswd_line(u, p) + "\n" for u, p in self.users.items())
            config += ["auth:", "  htpasswd:", "    realm: shoal-test", f"    path: {path}"]
        config_path = os.path.join(self.dir, "config.yml")
        with open(config_path, "w") as f:
            f.write("\n".join(config) + "\n")
        self.log_path = os.path.join(self.dir, "registry.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", config_path], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}: {self.log()}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
                return self.host
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    return self.host
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start listening on {self.host}: {self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-2000:]

    def blob_path(self, digest: str) -> str:
        hexpart = digest.partition(":")[2]
        blobs = os.path.join(self.dir, "storage", "docker", "registry", "v2", "blobs", "sha256")
        return os.path.join(blobs, hexpart[:2], hexpart, "data")

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- hand-made layers and images -----------------------------------------------------------


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = MTIME
    return info


def d(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0):
    return _info(name, tarfile.DIRTYPE, mode, uid, gid), None


def f(name: str, data: bytes = b"", mode: int = 0o644, uid: int = 0, gid: int = 0):
    info = _info(name, tarfile.REGTYPE, mode, uid, gid)
    info.size = len(data)
    return info, data


def symlink(name: str, target: str):
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return info, None


def hardlink(name: str, target: str):
    info = _info(name, tarfile.LNKTYPE, 0o644)
    info.linkname = target
    return info, None


def chardev(name: str, major: int, minor: int, mode: int = 0o666):
    info = _info(name, tarfile.CHRTYPE, mode)
    info.devmajor, info.devminor = major, minor
    return info, None


def fifo(name: str, mode: int = 0o644):
    return _info(name, tarfile.FIFOTYPE, mode), None


def tar_bytes(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def zstd_raw(data: bytes) -> bytes:
    """A valid zstd frame made of raw (stored) blocks: no compressor needed to make one."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out += bytes([0x00, 0x38])  # no checksum/dict/size fields; window 128 KiB
    block = 1 << 17
    chunks = [data[i : i + block] for i in range(0, len(data), block)] or [b""]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        out += (len(chunk) << 3 | int(last)).to_bytes(3, "little") + chunk  # block type 0: raw
    return bytes(out)


class OciLayout:
    """An OCI image layout directory written by hand."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as fh:
            json.dump({"imageLayoutVersion": "1.0.0"}, fh)
        self.refs: list[dict] = []

    def blob(self, data: bytes, media_type: str, **extra) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "wb") as fh:
            fh.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    def layer(self, entries, compression: str = "gzip") -> tuple[dict, str]:
        """(descriptor, diff_id)"""
        raw = tar_bytes(entries)
        diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        if compression == "gzip":
            return self.blob(gzip.compress(raw, mtime=0), OCI_LAYER_GZIP), diff_id
        if compression == "zstd":
            return self.blob(zstd_raw(raw), OCI_LAYER_ZSTD), diff_id
        return self.blob(raw, OCI_LAYER_TAR), diff_id

    def image(self, layers: list[tuple[dict, str]], config: dict, arch: str = "amd64") -> dict:
        full = {
            "architecture": arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
            "history": [{"created_by": "test"} for _ in layers],
        }
        config_desc = self.blob(json.dumps(full).encode(), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [desc for desc, _ in layers],
        }
        return self.blob(json.dumps(manifest).encode(), OCI_MANIFEST, platform={"architecture": arch, "os": "linux"})

    def index(self, manifests: list[dict]) -> dict:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(index).encode(), OCI_INDEX)

    def tag(self, name: str, desc: dict) -> None:
        entry = {k: v for k, v in desc.items() if k != "platform"}
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.refs.append(entry)
        with open(os.path.join(self.path, "index.json"), "w") as fh:
            json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs}, fh)


def push(layout: OciLayout, tag: str, dest: str, *, creds: str | None = None, extra: tuple[str, ...] = ()) -> None:
    """skopeo copy oci:<layout>:<tag> docker://<dest>"""
    cmd = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", *extra]
    if creds:
        cmd += ["--dest-creds", creds]
    cmd += [f"oci:{layout.path}:{tag}", f"docker://{dest}"]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


class BearerProxy:
    """In front of an open registry, asks for a Bearer token from its own /token, the way
    Docker Hub does; the token service wants HTTP Basic user:password. Counts requests."""

    def __init__(self, upstream: str, user: str, password: str):
        self.upstream = upstream
        self.user, self.password = user, password
        self.token = "tok-" + os.urandom(8).hex()
        self.requests: list[str] = []
        self.token_requests: list[dict] = []

    async def start(self) -> str:
        from aiohttp import BasicAuth, ClientSession, web

        async def token(request: web.Request) -> web.Response:
            self.token_requests.append(dict(request.query))
            try:
                creds = BasicAuth.decode(request.headers.get("Authorization", ""))
            except ValueError:
                creds = None
            if creds is None or (creds.login, creds.password) != (self.user, self.password):
                return web.json_response({"details": "incorrect username or password"}, status=401)
            return web.json_response({"token": self.token, "expires_in": 300})

        async def v2(request: web.Request) -> web.StreamResponse:
            self.requests.append(request.path)
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                repo = request.match_info["tail"].split("/manifests/")[0].split("/blobs/")[0]
                challenge = (
                    f'Bearer realm="http://{self.host}/token",service="shoal-test",scope="repository:{repo}:pull"'
                )
                return web.json_response(
                    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                    status=401,
                    headers={"WWW-Authenticate": challenge},
                )
            headers = {k: v for k, v in request.headers.items() if k.lower() == "accept"}
            async with self.session.get(f"http://{self.upstream}{request.path_qs}", headers=headers) as up:
                resp = web.StreamResponse(status=up.status)
                for k in ("Content-Type", "Docker-Content-Digest", "Content-Length"):
                    if k in up.headers:
                        resp.headers[k] = up.headers[k]
                await resp.prepare(request)
                async for chunk in up.content.iter_chunked(1 << 16):
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

        app = web.Application()
        app.router.add_get("/token", token)
        app.router.add_get("/v2/{tail:.*}", v2)
        self.session = ClientSession(auto_decompress=False)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return self.host

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.session.close()
