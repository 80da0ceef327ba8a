"""Pulling images from OCI / Docker registries into the layer store.

Speaks the OCI distribution API over aiohttp: resolves a reference (through a mirror when one
is configured), picks linux/amd64 from an index, reads the config, and streams each layer blob
through a sha256 check into an overlay-format directory (see registry_unpack). Layers are
content addressed (layer id = the blob digest's hex), so a layer already in the store is never
downloaded again.
"""

import asyncio
import base64
import concurrent.futures
import hashlib
import io
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from .registry_unpack import LayerFormatError, extract_layer
from .spec import BuiltImage, ImageConfig
from .store import LayerStore

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_DOCKER_V1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
_INDEXES = (OCI_INDEX, DOCKER_LIST)
_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))

PLATFORM = ("linux", "amd64")
DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
_DOCKER_HUB_API = "registry-1.docker.io"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
INSECURE_ENV = "SHOAL_INSECURE_REGISTRIES"  # comma-separated hosts (host or host:port) spoken to over http

_CONCURRENT_LAYERS = 4
_ATTEMPTS = 3  # per layer, for dropped connections
_CHUNK = 1 << 20
_PROGRESS_EVERY = 15.0  # seconds between progress lines for a layer still downloading
_MAX_DOCUMENT = 32 << 20  # manifests and configs are read into memory; layers never are
_USER_AGENT = "shoal/0.1"

_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class RegistryError(Exception):
    """Pulling failed; the message says why in words a user can act on."""


class _NotFound(RegistryError):
    def __init__(self, message: str, detail: str):
        super().__init__(message)
        self.detail = detail


@dataclass
class RegistryAuth:
    username: str
    password: str


# -- references ----------------------------------------------------------------------------


def _split_ref(ref: str) -> tuple[str, str, str]:
    text = ref.strip()
    for prefix in ("docker://", "oci://"):
        text = text.removeprefix(prefix)
    if not text:
        raise RegistryError("empty image reference")
    name, _, digest = text.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name
    tag = ""
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if host in _DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if not _REPO_RE.match(path):
        raise RegistryError(f"invalid image reference {ref!r}: bad repository name {path!r} (lower case only)")
    if tag and not _TAG_RE.match(tag):
        raise RegistryError(f"invalid image reference {ref!r}: bad tag {tag!r}")
    if digest and not _DIGEST_RE.match(digest):
        raise RegistryError(
            f"invalid image reference {ref!r}: bad or unsupported digest {digest!r} (want sha256:<64 hex>)"
        )
    return host, path, digest or tag or "latest"


def _resolve(ref: str, mirrors: dict[str, str]) -> tuple[str | None, str, str, str]:
    """(scheme forced by the mirror or None, host, repository, tag or digest)."""
    host, repo, reference = _split_ref(ref)
    mirror = mirrors.get(host)
    if not mirror:
        return None, host, repo, reference
    scheme = None
    m = re.match(r"^(https?)://", mirror)
    if m:
        scheme, mirror = m.group(1), mirror[m.end() :]
    mirror_host, _, prefix = mirror.strip("/").partition("/")
    if prefix:  # a mirror that serves the upstream under a path ("harbor.corp/hub-proxy")
        repo = f"{prefix.strip('/')}/{repo}"
    return scheme, mirror_host, repo, reference


def resolve_ref(ref: str, mirrors: dict[str, str]) -> tuple[str, str, str]:
    """(registry host, repository, tag or digest) for an image reference.

    "python:3.11-slim" -> ("docker.io", "library/python", "3.11-slim"). A reference to a host
    that mirrors lists (e.g. "docker.io") is rewritten to the mirror's host; a mirror may be
    written "host[:port][/path-prefix]", optionally with an http:// or https:// scheme.
    """
    _, host, repo, reference = _resolve(ref, mirrors or {})
    return host, repo, reference


def _insecure_hosts() -> set[str]:
    return {h.strip().lower() for h in os.environ.get(INSECURE_ENV, "").split(",") if h.strip()}


def registry_scheme(host: str) -> str:
    """http for loopback hosts and those listed in SHOAL_INSECURE_REGISTRIES, else https."""
    host = host.lower()
    if host.startswith("["):  # [::1]:5000
        name = host[1:].partition("]")[0]
    elif host.count(":") == 1:  # name:port
        name = host.partition(":")[0]
    else:
        name = host
    if name in _LOCAL_HOSTS:
        return "http"
    insecure = _insecure_hosts()
    return "http" if host in insecure or name in insecure else "https"


# -- HTTP ----------------------------------------------------------------------------------


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """'Bearer realm="https://auth.example/token",service="x",scope="y"' -> ("bearer", {...})"""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in re.finditer(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))', rest):
        quoted, plain = m.group(2), m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else plain
    return scheme.lower(), params


async def _error_text(resp: aiohttp.ClientResponse) -> str:
    """The registry's own words from an error body ({"errors": [{"code", "message"}]})."""
    try:
        body = await resp.content.read(64 << 10)
        errors = json.loads(body).get("errors") or []
        words = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors if isinstance(e, dict)]
        if words:
            return "; ".join(words)
        return body.decode(errors="replace").strip()[:200]
    except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):  # no words then
        return ""


def _proxy_for(url: URL) -> str | None:
    """The proxy from HTTP(S)_PROXY / NO_PROXY for url (aiohttp's trust_env would also apply
    ~/.netrc credentials, which clash with the registry auth set here)."""
    if not url.host or urllib.request.proxy_bypass(url.host):
        return None
    return urllib.request.getproxies().get(url.scheme)


def _basic(auth: RegistryAuth) -> str:
    return "Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()


class _Client:
    """One repository on one registry, with the auth it took to get in."""

    def __init__(self, session: aiohttp.ClientSession, scheme: str, host: str, repo: str, auth: RegistryAuth | None):
        self.session = session
        self.host = host
        self.repo = repo
        self.auth = auth
        api_host = _DOCKER_HUB_API if host == DOCKER_HUB else host
        self.base = f"{scheme}://{api_host}/v2/{repo}"
        self._authorization: str | None = None
        self._auth_lock = asyncio.Lock()

    def _unreachable(self, e: BaseException) -> RegistryError:
        if isinstance(e, (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)):
            return RegistryError(
                f"TLS error talking to registry {self.host}: {e}; if it serves plain HTTP, list it in {INSECURE_ENV}"
            )
        if isinstance(e, asyncio.TimeoutError):
            return RegistryError(f"registry {self.host} timed out ({self.base})")
        if isinstance(e, aiohttp.ClientConnectionError):
            return RegistryError(f"cannot reach registry {self.host} ({self.base}): {e or type(e).__name__}")
        return RegistryError(f"request to registry {self.host} failed: {e!r}")

    async def get(self, path: str, accept: str | None = None) -> aiohttp.ClientResponse:
        """GET below /v2/<repo>, answering auth challenges; the caller releases the response."""
        url = URL(self.base + path, encoded=True)
        for attempt in range(2):
            headers = {"Accept": accept} if accept else {}
            sent = self._authorization
            if sent:
                headers["Authorization"] = sent
            try:
                resp = await self.session.get(url, headers=headers, proxy=_proxy_for(url))
            except (TimeoutError, aiohttp.ClientError) as e:
                raise self._unreachable(e) from e
            if resp.status != 401:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            detail = await _error_text(resp)
            resp.release()
            if attempt == 0 and challenge:
                await self._authenticate(challenge, sent)
                continue
            raise self._denied(detail)
        raise AssertionError("unreachable")

    def _denied(self, detail: str) -> RegistryError:
        where = f"{self.host}/{self.repo}"
        detail = f" ({detail})" if detail else ""
        if self.auth:
            return RegistryError(
                f"authentication failed for {where}: the registry refused user {self.auth.username!r} "
                f"(wrong username or password, or no access to this repository){detail}"
            )
        return RegistryError(
            f"access denied to {where}: the registry wants credentials, or the repository does not exist{detail}"
        )

    async def _authenticate(self, challenge: str, failed: str | None) -> None:
        async with self._auth_lock:
            if self._authorization != failed:
                return  # another request already answered a challenge since this one was sent
            scheme, params = _challenge(challenge)
            if scheme == "basic":
                if not self.auth:
                    raise RegistryError(f"registry {self.host} requires a username and password (HTTP Basic auth)")
                self._authorization = _basic(self.auth)
            elif scheme == "bearer":
                self._authorization = "Bearer " + await self._token(params)
            else:
                raise RegistryError(f"registry {self.host} asks for unsupported auth scheme {scheme!r}")

    async def _token(self, params: dict[str, str]) -> str:
        realm = params.get("realm")
        if not realm:
            raise RegistryError(f"registry {self.host} sent a Bearer challenge without a realm")
        query = {"scope": params.get("scope") or f"repository:{self.repo}:pull"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {"Authorization": _basic(self.auth)} if self.auth else {}
        try:
            url = URL(realm).update_query(query)
        except ValueError as e:
            raise RegistryError(f"registry {self.host} sent a bad token realm {realm!r}: {e}") from e
        try:
            async with self.session.get(url, headers=headers, proxy=_proxy_for(url)) as resp:
                if resp.status in (401, 403):
                    detail = await _error_text(resp)
                    who = f"user {self.auth.username!r}" if self.auth else "anonymous access"
                    raise RegistryError(
                        f"authentication failed for {self.host}: token service {realm} refused {who}"
                        f"{' (' + detail + ')' if detail else ''}"
                    )
                if resp.status != 200:
                    detail = await _error_text(resp)
                    raise RegistryError(f"token service {realm} for {self.host} answered HTTP {resp.status}: {detail}")
                body = json.loads(await resp.content.read(_MAX_DOCUMENT))
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            raise RegistryError(f"cannot reach token service {realm} for registry {self.host}: {e}") from e
        except (ValueError, UnicodeDecodeError) as e:
            raise RegistryError(f"token service {realm} answered something that is not JSON") from e
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token service {realm} gave no token")
        return token

    async def document(self, path: str, what: str, accept: str | None = None) -> tuple[bytes, str]:
        """A small JSON document (manifest or config): its bytes and Content-Type."""
        resp = await self.get(path, accept)
        try:
            if resp.status == 404:
                detail = await _error_text(resp) or "HTTP 404"
                raise _NotFound(f"{what}: not found ({detail})", detail)
            if resp.status != 200:
                raise RegistryError(self._status_text(what, resp.status, await _error_text(resp)))
            try:
                body = await resp.content.read(_MAX_DOCUMENT + 1)
            except (TimeoutError, aiohttp.ClientError) as e:
                raise self._unreachable(e) from e
            if len(body) > _MAX_DOCUMENT:
                raise RegistryError(f"{what} is larger than {_MAX_DOCUMENT >> 20} MB")
            return body, resp.headers.get("Content-Type", "").split(";")[0].strip()
        finally:
            resp.release()

    def _status_text(self, what: str, status: int, detail: str) -> str:
        if status == 403:
            return f"{what}: access denied by {self.host} ({detail or 'HTTP 403'})"
        if status == 429:
            return f"{what}: {self.host} is rate limiting pulls; try again later ({detail or 'HTTP 429'})"
        return f"{what}: registry {self.host} answered HTTP {status}{' (' + detail + ')' if detail else ''}"


# -- manifests -----------------------------------------------------------------------------


def _parse(body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return doc


def _check_digest(body: bytes, digest: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if digest.startswith("sha256:") and actual != digest:
        raise RegistryError(f"{what}: digest mismatch: expected {digest}, got {actual}")


def _media_type(doc: dict[str, Any], content_type: str) -> str:
    known = (*_INDEXES, *_MANIFESTS, *_DOCKER_V1)
    for candidate in (doc.get("mediaType"), content_type):
        if candidate in known:
            return candidate
    if doc.get("schemaVersion") == 1:
        return _DOCKER_V1[0]
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc:
        return OCI_MANIFEST
    return doc.get("mediaType") or content_type or "unknown"


def _platform_name(p: dict[str, Any]) -> str:
    name = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return name + (f"/{p['variant']}" if p.get("variant") else "")


def _pick_platform(index: dict[str, Any], display: str) -> dict[str, Any]:
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict) and m.get("digest")]
    matching = [
        m
        for m in entries
        if (m.get("platform") or {}).get("os") == PLATFORM[0]
        and (m.get("platform") or {}).get("architecture") == PLATFORM[1]
    ]
    if not matching:
        names = sorted({_platform_name(m.get("platform") or {}) for m in entries} - {"unknown/unknown"})
        raise RegistryError(
            f"{display} has no {'/'.join(PLATFORM)} image (platforms: {', '.join(names) or 'none listed'})"
        )
    # Plain amd64 before amd64 variants (v2, v3: CPU feature levels not every host has).
    matching.sort(key=lambda m: (m.get("platform") or {}).get("variant") not in (None, "", "v1"))
    return matching[0]


def image_config(config: dict[str, Any]) -> ImageConfig:
    """ImageConfig from an OCI/Docker image config blob (python_version is left unknown)."""
    c = config.get("config") or {}
    env: dict[str, str] = {}
    for item in c.get("Env") or []:
        key, _, value = str(item).partition("=")
        if key:
            env[key] = value
    result = ImageConfig(
        env=env,
        workdir=c.get("WorkingDir") or "/",
        user=c.get("User") or None,
        entrypoint=list(c["Entrypoint"]) if c.get("Entrypoint") else None,
        cmd=list(c["Cmd"]) if c.get("Cmd") else None,
    )
    if c.get("Shell"):
        result.shell = list(c["Shell"])
    return result


# -- layers --------------------------------------------------------------------------------


class _Aborted(Exception):
    pass


_EOF = b""
_ABORT = object()


class _Pipe(io.RawIOBase):
    """Bytes handed from the event loop (the download) to a thread (the unpacker), bounded."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
        self._buf = memoryview(b"")
        self._eof = False
        self._aborted = threading.Event()

    # event loop side

    async def feed(self, chunk: bytes, consumer: asyncio.Future) -> None:
        """Queue chunk for the reader, unless the reader finishes (or fails) first."""
        if not self._queue.full():
            self._queue.put_nowait(chunk)
            return
        put = asyncio.ensure_future(self._queue.put(chunk))
        await asyncio.wait({put, consumer}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()

    def abort(self) -> None:
        self._aborted.set()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_ABORT)

    # thread side

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._buf:
            if self._eof:
                return 0
            future = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop)
            while True:
                try:
                    item = future.result(timeout=1)
                    break
                except concurrent.futures.TimeoutError:
                    if self._aborted.is_set() or self._loop.is_closed():
                        future.cancel()
                        raise _Aborted() from None
            if item is _ABORT:
                raise _Aborted()
            if item == _EOF:
                self._eof = True
                return 0
            self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _short(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}…"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


async def _download_layer(
    client: _Client, desc: dict[str, Any], dest: str, progress: Callable[[str], None] | None = None
) -> int:
    """Stream one layer blob into dest, unpacking as it arrives; returns its size in bytes."""
    digest = desc["digest"]
    what = f"layer {digest} of {client.host}/{client.repo}"
    resp = await client.get(f"/blobs/{digest}")
    loop = asyncio.get_running_loop()
    pipe = _Pipe(loop)
    unpack = asyncio.ensure_future(asyncio.to_thread(extract_layer, pipe, dest, desc.get("mediaType", "")))
    hasher = hashlib.sha256()
    size = 0
    unpack_error: BaseException | None = None
    try:
        if resp.status != 200:
            detail = await _error_text(resp)
            if resp.status == 404:
                raise RegistryError(f"{what}: blob not found ({detail or 'HTTP 404'})")
            raise RegistryError(client._status_text(what, resp.status, detail))
        started = next_report = time.monotonic()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            if progress is not None and time.monotonic() >= next_report + _PROGRESS_EVERY:
                next_report = time.monotonic()
                of = f"/{_mb(desc['size'])}" if isinstance(desc.get("size"), int) else ""
                progress(f"layer {_short(digest)} {_mb(size)}{of} ({int(next_report - started)}s)")
            if not unpack.done():
                await pipe.feed(chunk, unpack)
        if not unpack.done():
            await pipe.feed(_EOF, unpack)
        await asyncio.wait({unpack})  # not `await unpack`: a cancel must not cancel it (the thread goes on)
        unpack_error = unpack.exception()  # reported below, after the digest check
    finally:
        resp.release()
        if not unpack.done():
            pipe.abort()
            await _settle(unpack)  # the thread must stop writing before dest is removed
        if not unpack.cancelled():
            unpack.exception()  # retrieved: an abort's error is not news
    # The digest speaks first: a corrupt download also makes the unpacker fail, less clearly.
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        raise RegistryError(f"{what}: digest mismatch: downloaded {_mb(size)} hashing to {actual}")
    expected_size = desc.get("size")
    if isinstance(expected_size, int) and expected_size != size:
        raise RegistryError(f"{what}: size mismatch: expected {expected_size} bytes, got {size}")
    if unpack_error is not None:
        if isinstance(unpack_error, LayerFormatError):
            raise RegistryError(f"{what}: {unpack_error}") from unpack_error
        raise RegistryError(f"{what}: unpacking failed: {unpack_error!r}") from unpack_error
    return size


async def _pull_layer(
    client: _Client, store: LayerStore, desc: dict[str, Any], limit: asyncio.Semaphore, log: Callable[[str], None]
) -> int | None:
    """Make sure the layer is in the store; the bytes downloaded, or None when it already was."""
    digest = desc["digest"]
    layer_id = digest.partition(":")[2]
    if await store.use([layer_id]):
        log(f"layer {_short(digest)} cached")
        return None
    async with limit:
        for attempt in range(1, _ATTEMPTS + 1):
            started = time.monotonic()
            try:
                async with store.building(layer_id) as tmp:
                    if tmp is None:  # pulled meanwhile by someone else
                        log(f"layer {_short(digest)} cached")
                        return None
                    size = await _download_layer(client, desc, tmp, log)
                log(f"layer {_short(digest)} {_mb(size)} in {time.monotonic() - started:.1f}s")
                return size
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
                if attempt == _ATTEMPTS:
                    raise RegistryError(
                        f"layer {digest} of {client.host}/{client.repo}: download failed {_ATTEMPTS} times: {e!r}"
                    ) from e
                log(f"layer {_short(digest)} download interrupted ({e!r}); retrying")
                await asyncio.sleep(attempt)
            except RegistryError as e:
                if attempt == _ATTEMPTS or not isinstance(e.__cause__, (aiohttp.ClientError, asyncio.TimeoutError)):
                    raise
                log(f"layer {_short(digest)}: {e}; retrying")
                await asyncio.sleep(attempt)
    raise AssertionError("unreachable")


async def _settle(future: asyncio.Future) -> None:
    """Wait for future to finish, even through cancellation (which is passed on afterwards)."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


async def _gather(tasks: list[asyncio.Task]) -> list[Any]:
    """Results of all tasks; on the first failure the others are cancelled and awaited."""
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            if not task.done() and not task.cancelling():  # gather's own cancel may be on its way
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- pull ----------------------------------------------------------------------------------


async def pull(
    store: LayerStore,
    ref: str,
    *,
    mirrors: dict[str, str] | None = None,
    auth: RegistryAuth | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> BuiltImage:
    """Pull ref's linux/amd64 image into store: its layers (bottom first) and config."""
    forced_scheme, host, repo, reference = _resolve(ref, mirrors or {})
    scheme = forced_scheme or registry_scheme(host)
    sep = "@" if reference.startswith("sha256:") else ":"
    display = f"{host}/{repo}{sep}{reference}"
    log(f"pulling {ref}" + (f" from {display}" if display != ref else ""))
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with aiohttp.ClientSession(
        timeout=timeout, auto_decompress=False, headers={"User-Agent": _USER_AGENT}
    ) as session:
        client = _Client(session, scheme, host, repo, auth)
        manifest, digest = await _manifest(client, reference, display)
        config_desc = manifest.get("config") or {}
        if not config_desc.get("digest"):
            raise RegistryError(f"{display}: manifest has no config")
        config_body, _ = await client.document(f"/blobs/{config_desc['digest']}", f"{display}: config")
        _check_digest(config_body, config_desc["digest"], f"{display}: config")
        config = _parse(config_body, f"{display}: config")
        os_arch = (config.get("os"), config.get("architecture"))
        if all(os_arch) and os_arch != PLATFORM:
            raise RegistryError(f"{display} is a {os_arch[0]}/{os_arch[1]} image; need {'/'.join(PLATFORM)}")

        layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
        for d in layers:
            if not _DIGEST_RE.match(str(d.get("digest", ""))):
                raise RegistryError(f"{display}: unsupported layer digest {d.get('digest')!r} (want sha256)")
        # A layer listed twice (typically the empty one) is kept only where it is topmost:
        # overlayfs wants distinct lowerdirs, and the merged view is the same.
        top = {d["digest"]: i for i, d in enumerate(layers)}
        layers = [d for i, d in enumerate(layers) if top[d["digest"]] == i]
        total = sum(d.get("size") or 0 for d in layers)
        log(f"{display}: {digest[:19]}…, {len(layers)} layers, {_mb(total)}")

        limit = asyncio.Semaphore(_CONCURRENT_LAYERS)
        started = time.monotonic()
        tasks = [asyncio.create_task(_pull_layer(client, store, d, limit, log)) for d in layers]
        sizes = await _gather(tasks)
    fetched = [s for s in sizes if s is not None]
    if fetched:
        log(
            f"pulled {ref}: {len(fetched)} of {len(layers)} layers downloaded, "
            f"{_mb(sum(fetched))} in {time.monotonic() - started:.1f}s"
        )
    else:
        log(f"pulled {ref}: all {len(layers)} layers cached")
    return BuiltImage(
        layers=[d["digest"].partition(":")[2] for d in layers],
        config=image_config(config),
        built=len(fetched),
    )


async def _manifest(client: _Client, reference: str, display: str) -> tuple[dict[str, Any], str]:
    """The linux/amd64 image manifest for reference, and its digest."""
    for depth in range(3):  # an index may point at another index; allow a little nesting
        what = f"{display}" if depth == 0 else f"{display}: manifest {reference}"
        try:
            body, content_type = await client.document(f"/manifests/{reference}", what, _ACCEPT)
        except _NotFound as e:
            if depth == 0:
                raise RegistryError(f"unknown image or tag {display} ({e.detail})") from None
            raise
        if reference.startswith("sha256:"):
            _check_digest(body, reference, what)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        doc = _parse(body, f"{what}: manifest")
        media_type = _media_type(doc, content_type)
        if media_type in _INDEXES:
            reference = _pick_platform(doc, display)["digest"]
            continue
        if media_type in _MANIFESTS:
            return doc, digest
        if media_type in _DOCKER_V1:
            raise RegistryError(f"{display} uses the obsolete Docker schema 1 manifest format, which is not supported")
        raise RegistryError(f"{display}: unsupported manifest type {media_type!r}")
    raise RegistryError(f"{display}: image index nested too deeply")


__all__ = ["RegistryAuth", "RegistryError", "image_config", "pull", "registry_scheme", "resolve_ref"]
