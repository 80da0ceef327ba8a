"""Encrypted tunnels: a TLS port passing its connections, decrypted, to a port on this machine,
offering HTTP/2 in its handshake when asked to; closed, it takes no more connections."""

import asyncio
import ssl

import pytest

from shoal.api import router_tls
from shoal.worker.tls_forward import TlsForwarder


async def _echo_server() -> asyncio.Server:
    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


@pytest.mark.parametrize("h2, offered", [(False, "http/1.1"), (True, "h2")])
async def test_a_tunnel_passes_its_connections_on_decrypted(tmp_path, h2, offered):
    cert, key, bundle = router_tls.ensure(str(tmp_path), ["127.0.0.1"], "")
    forwarder = TlsForwarder(cert, key, "127.0.0.1")
    inner = await _echo_server()
    tls_port, close = await forwarder.open("127.0.0.1", inner.sockets[0].getsockname()[1], h2=h2)
    client = ssl.create_default_context(cafile=bundle)
    client.set_alpn_protocols(["h2", "http/1.1"])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", tls_port, ssl=client)
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == offered
        writer.write(b"hello\n")
        assert await reader.readline() == b"hello\n"
        writer.close()
    finally:
        await close()
        inner.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", tls_port, ssl=client)
