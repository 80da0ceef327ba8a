"""The command router's certificate: signed by shoal's own CA, for the names it is reached at, and
trusted by a client given the CA bundle containers get."""

import asyncio
import ssl

from shoal.api import router_tls
from shoal.worker.tls import server_context


async def _handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext, name: str) -> str:
    async def answer(reader, writer):
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context, server_hostname=name)
        protocol = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        writer.close()
        return protocol
    finally:
        server.close()


def _client(bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=bundle)  # what the client in a container builds
    context.set_alpn_protocols(["h2"])
    return context


async def test_a_client_trusting_the_bundle_verifies_the_router_by_name_and_address(tmp_path):
    host_bundle = tmp_path / "host.pem"
    host_bundle.write_text("")
    cert, key, bundle = router_tls.ensure(str(tmp_path), ["gpu-box.internal", "10.1.2.3"], str(host_bundle))
    context = server_context(cert, key, alpn=("h2",))
    for name in ("gpu-box.internal", "10.1.2.3", "127.0.0.1", "localhost"):
        assert await _handshake(context, _client(bundle), name) == "h2"
    try:
        await _handshake(context, _client(bundle), "elsewhere.example.com")
        raise AssertionError("a name the certificate does not hold was accepted")
    except ssl.SSLCertVerificationError:
        pass


def test_the_ca_is_kept_and_the_certificate_made_again_for_a_new_name(tmp_path):
    cert, _, bundle = router_tls.ensure(str(tmp_path), ["a.example"], "")
    ca = (tmp_path / "tls" / "ca.pem").read_bytes()
    first = open(cert, "rb").read()
    router_tls.ensure(str(tmp_path), ["a.example"], "")
    assert open(cert, "rb").read() == first  # nothing new to name: kept
    router_tls.ensure(str(tmp_path), ["b.example"], "")
    assert open(cert, "rb").read() != first
    assert (tmp_path / "tls" / "ca.pem").read_bytes() == ca
    assert open(bundle, "rb").read() == ca  # no host bundle: shoal's CA alone
