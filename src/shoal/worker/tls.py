"""TLS material on disk, shared by the control plane's command router (api/router_tls.py) and
the encrypted sandbox tunnels of every worker: PEM files written whole, CA bundles, and server
contexts made from them."""

import os
import ssl


def write_file(path: str, data: bytes, private: bool = False) -> None:
    """Written whole or not at all; a private one (a key) readable by its owner only."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def ca_bundle(host_bundle: str, ca_pem: bytes) -> bytes:
    """The host's CA bundle, if it has one, and one more CA."""
    host_cas = b""
    if host_bundle and os.path.exists(host_bundle):
        with open(host_bundle, "rb") as f:
            host_cas = f.read().rstrip(b"\n") + b"\n"
    return host_cas + ca_pem


def server_context(cert_path: str, key_path: str, alpn: tuple[str, ...]) -> ssl.SSLContext:
    """A server's TLS with this certificate, offering the `alpn` protocols (gRPC's is h2)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(list(alpn))
    return context
