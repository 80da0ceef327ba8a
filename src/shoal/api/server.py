"""Runs the platform behind its endpoints: gRPC for the client, HTTP for blobs and admin, HTTP for
web endpoints, and the command router over TLS."""

import asyncio
import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from grpclib import GRPCError, Status
from grpclib.events import RecvRequest, listen
from grpclib.server import Server
from modal_version import __version__ as CLIENT_VERSION

from ..control.errors import Unauthenticated
from ..control.platform import Platform, Settings
from ..worker.protocol import TASK_ID_HEADER, TASK_SECRET_HEADER
from ..worker.tls import server_context
from ..worker.tls_forward import TlsForwarder
from . import router_tls
from .admin import admin_routes
from .blob_urls import BlobUrls
from .build_servicer import BuildStepServicer
from .command_router import SERVICE as ROUTER
from .command_router import CommandRouter
from .host_proof import SECRET_FILE, host_proof
from .http import http_app
from .server_proxy import ServerProxy
from .servicer import ShoalServicer
from .volumes import volume_routes
from .web import web_app
from .worker_service import WorkerService

log = logging.getLogger(__name__)


class ShoalServer:
    def __init__(self, settings: Settings, host: str, port: int, http_port: int, web_port: int, router_port: int):
        self.settings = settings
        self.host, self.port, self.http_port, self.web_port = host, port, http_port, web_port
        self.router_port = router_port
        settings.server_url = settings.server_url or f"http://{host}:{port}"
        settings.web_url = f"http://{{label}}.{settings.web_domain}:{web_port}"
        # Blob URLs go to clients and containers anywhere: they name the host they reach shoal at.
        public_host = urlsplit(settings.server_url).hostname or host
        cert, key, bundle = router_tls.ensure(settings.home, [public_host], settings.ca_bundle)
        self._router_tls = server_context(cert, key, alpn=("h2",))
        settings.router_url = f"https://{public_host}:{router_port}"
        settings.router_ca = router_tls.ca_pem(settings.home)
        if host in ("127.0.0.1", "0.0.0.0", "localhost"):
            settings.loopback_router_url = f"http://127.0.0.1:{port}"
        if settings.ca_bundle:  # none at all is asked for with SHOAL_CA_BUNDLE=""
            settings.ca_bundle = bundle  # the containers' own client trusts the router's certificate
        secret = _server_secret(settings.home)
        self.blob_urls = BlobUrls(f"http://{public_host}:{http_port}", secret)
        self.host_proof = host_proof(secret)
        self.platform = Platform(settings, self._serve_task, secret)
        self.platform.worker.forwarder = TlsForwarder(cert, key, host)
        self._grpc: Server | None = None
        self._router: Server | None = None
        self._http: web.AppRunner | None = None
        self._web: web.AppRunner | None = None

    async def start(self) -> None:
        await self.platform.start()
        modal = ShoalServicer(self.platform, self.blob_urls)
        workers = WorkerService(self.platform, modal.__mapping__(), self._check)
        # The command router is served beside the API for clients on this machine, and over TLS
        # for all (see rpc.router_url).
        router = CommandRouter(self.platform.execs, self.platform.sandboxes, self.platform.secrets)
        self._grpc = Server([modal, workers, router])
        listen(self._grpc, RecvRequest, self._authenticate)
        await self._grpc.start(self.host, self.port)
        self._router = Server([router])
        await self._router.start(self.host, self.router_port, ssl=self._router_tls)
        http = http_app(
            self.platform.blobs,
            self.blob_urls,
            [*admin_routes(self.platform, self.host_proof), *volume_routes(self.platform.volumes, self.blob_urls)],
        )
        self._http = web.AppRunner(http, access_log=None)
        await self._http.setup()
        await web.TCPSite(self._http, self.host, self.http_port).start()
        # A web request's client that goes away cancels its handler, and with it the call; so does
        # shoal's stop, at once, rather than wait for the requests in flight.
        self._web = web.AppRunner(
            web_app(self.platform.web_requests, ServerProxy(self.platform.servers, self.platform.connect_tokens)),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await self._web.setup()
        await web.TCPSite(self._web, self.host, self.web_port).start()
        log.info(
            "shoal listening on %s (blobs on port %d, web endpoints at %s)",
            self.settings.server_url,
            self.http_port,
            self.settings.web_url,
        )

    async def close(self) -> None:
        if self._web:
            await self._web.cleanup()  # its requests' calls are cancelled while the store is open
        for server in (self._grpc, self._router):
            if server:
                server.close()
        await self.platform.close()
        if self._http:
            await self._http.cleanup()
        for server in (self._grpc, self._router):
            if server:
                await server.wait_closed()

    async def _authenticate(self, event: RecvRequest) -> None:
        if not event.method_name.startswith(ROUTER):  # the router checks its own access tokens
            await self._check(event.metadata)

    async def _check(self, metadata: Mapping[str, Any]) -> None:
        """A request's client version and credentials: a token, or a container's id and secret."""
        version = metadata.get("x-modal-client-version", "")
        if version != CLIENT_VERSION:
            raise GRPCError(
                Status.FAILED_PRECONDITION,
                f"shoal supports the modal client version {CLIENT_VERSION} only; "
                f"this client is {version or 'unknown'}. Install it with: pip install modal=={CLIENT_VERSION}",
            )
        if task_id := str(metadata.get(TASK_ID_HEADER, "")):
            # A container on a joined worker, passed on by that worker with the secret it was given.
            if not self.platform.workers.verify_secret(task_id, str(metadata.get(TASK_SECRET_HEADER, ""))):
                raise GRPCError(Status.UNAUTHENTICATED, f"Task {task_id} is not running or its secret is wrong")
            return
        try:
            await self.platform.tokens.verify(
                str(metadata.get("x-modal-token-id", "")), str(metadata.get("x-modal-token-secret", ""))
            )
        except Unauthenticated as e:
            raise GRPCError(Status.UNAUTHENTICATED, str(e)) from None

    async def _serve_task(self, task_id: str, path: str):
        """A private endpoint for one container: the socket itself says who calls."""
        build_call = self.platform.build_functions.calls.get(task_id)
        servicer = (
            BuildStepServicer(self.platform, self.blob_urls, build_call)
            if build_call
            else ShoalServicer(self.platform, self.blob_urls, task_id)
        )
        server = Server([servicer])
        await server.start(path=path)

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        return stop


def _server_secret(home: str) -> bytes:
    path = os.path.join(home, SECRET_FILE)
    os.makedirs(home, exist_ok=True)
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    with open(path, "rb") as f:
        return f.read()


async def serve_forever(server: ShoalServer, ready: asyncio.Event | None = None) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if ready:
        ready.set()
    await stop.wait()
    await server.close()
