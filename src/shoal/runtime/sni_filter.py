"""Outbound TLS connections (port 443) of containers with a domain allowlist: redirected here by
the machine's firewall, and let through to where they were going only when the server name in
their TLS ClientHello (SNI) is on the container's list, exactly or under a `*.` wildcard, or
when they go to one of its allowed networks. Any other connection is closed before a byte
reaches its destination.
"""

import asyncio
import ipaddress
import socket
import struct
from dataclasses import dataclass

from .relay import relay

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: where a redirected connection was going
HELLO_WAIT = 10.0  # seconds a client has to send its ClientHello


@dataclass(frozen=True)
class Allowed:
    names: list[str]  # server names, `*.` wildcards
    networks: list[str]  # IPv4 networks, reached whatever the name


class SniFilter:
    def __init__(self) -> None:
        self.allowed: dict[str, Allowed] = {}  # container address -> where its connections may go
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()
        self.port = 0

    async def start(self, host: str) -> int:
        """Listen on `host` (a port the firewall redirects to); returns the port."""
        self._server = await asyncio.start_server(self._accept, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.cancel()
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(asyncio.current_task())
        try:
            allowed = self.allowed.get(writer.get_extra_info("peername")[0])
            destination = _original_destination(writer.get_extra_info("socket"))
            try:
                hello = await asyncio.wait_for(_first_record(reader), HELLO_WAIT)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                return
            if allowed is None or not _lets_through(allowed, destination[0], server_name(hello)):
                return
            await relay(reader, writer, *destination, first=hello)
        finally:
            writer.close()
            self._connections.discard(asyncio.current_task())


def _lets_through(allowed: Allowed, address: str, name: str | None) -> bool:
    if any(ipaddress.ip_address(address) in ipaddress.ip_network(n) for n in allowed.networks):
        return True
    return name is not None and matches(name, allowed.names)


def matches(name: str, allowed: list[str]) -> bool:
    """Whether a server name is on the list: the same name, one under a `*.domain` of it, or any
    name for `*`."""
    name = name.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


def server_name(record: bytes) -> str | None:
    """The SNI host name of a TLS record holding a ClientHello, None when it has none or is not one."""
    try:
        if record[0] != 0x16 or record[5] != 0x01:  # a handshake record, a ClientHello
            return None
        at = 5 + 4 + 2 + 32  # record header, handshake header, client version, random
        at += 1 + record[at]  # session id
        at += 2 + struct.unpack_from("!H", record, at)[0]  # cipher suites
        at += 1 + record[at]  # compression methods
        end = at + 2 + struct.unpack_from("!H", record, at)[0]
        at += 2
        while at + 4 <= end:
            kind, size = struct.unpack_from("!HH", record, at)
            at += 4
            if kind == 0:  # server_name: a list of (type, name); type 0 is a host name
                names_end = at + 2 + struct.unpack_from("!H", record, at)[0]
                at += 2
                while at + 3 <= names_end:
                    name_type, length = record[at], struct.unpack_from("!H", record, at + 1)[0]
                    if name_type == 0:
                        return record[at + 3 : at + 3 + length].decode("ascii")
                    at += 3 + length
                return None
            at += size
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None


async def _first_record(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(5)
    return header + await reader.readexactly(struct.unpack_from("!H", header, 3)[0])


def _original_destination(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port
