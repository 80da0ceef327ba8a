"""Encrypted tunnels (a sandbox's `encrypted_ports=`, `modal.forward()` in a function): a TLS port
of shoal's own whose connections are passed, decrypted, to a port a container listens on, on this
machine's loopback (a container on the machine's network) or at the container's own address.
Plain forwarding too (`forward`): an unencrypted tunnel to a container with a network of its own,
and a joined worker's port in front of a server's container.

The certificate is signed by shoal's CA (api/router_tls.py): the command
router's on shoal's own machine, one of its own on a joined worker's. An HTTP/2 tunnel offers
h2 in the TLS handshake (ALPN), the others HTTP/1.1.
"""

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable

from ..runtime.relay import relay
from .tls import server_context

ALPN = {False: ("http/1.1",), True: ("h2", "http/1.1")}  # by whether the tunnel is HTTP/2's
Close = Callable[[], Awaitable[None]]
Peers = list[str] | None  # the networks a port takes connections from; None for any


class TlsForwarder:
    def __init__(self, cert_path: str, key_path: str, host: str):
        self.contexts = {h2: server_context(cert_path, key_path, ALPN[h2]) for h2 in ALPN}
        self.host = host  # the address shoal listens on

    async def open(self, target: str, port: int, h2: bool = False, peers: Peers = None) -> tuple[int, Close]:
        """A TLS port passing its connections to `target`:`port` (a container's port, on this machine's
        loopback or at the container's own address); returns it and what closes it."""
        return await forward(self.host, target, port, self.contexts[h2], peers)


async def forward(
    listen_host: str, host: str, port: int, tls: ssl.SSLContext | None = None, peers: Peers = None
) -> tuple[int, Close]:
    """A port on `listen_host` (TLS when `tls` is given) passing its connections to `host`:`port`,
    those from the `peers` networks alone when given (a sandbox's inbound_cidr_allowlist); returns it
    and what closes it."""
    connections: set[asyncio.Task] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(asyncio.current_task())
        try:
            if peers is None or peer_in(writer.get_extra_info("peername")[0], peers):
                await relay(reader, writer, host, port)
            else:
                writer.close()
        finally:
            connections.discard(asyncio.current_task())

    server = await asyncio.start_server(accept, listen_host, 0, ssl=tls)

    async def close() -> None:
        server.close()
        for connection in list(connections):
            connection.cancel()
        await server.wait_closed()

    return server.sockets[0].getsockname()[1], close


def peer_in(peer: str, networks: list[str]) -> bool:
    """Whether an address (IPv4 in IPv6's mapped form too) is in one of the networks."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(network) for network in networks)


async def accepts(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts connections at `host`:`port`."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
