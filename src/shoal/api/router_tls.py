"""TLS for the command router: shoal's own certificate authority, and the router's certificate.

The client reaches a command router (`modal container exec`, a sandbox's stdio and commands) over
plain HTTP only when its API server is on localhost; everywhere else, a container's own client
included (it talks to the API on a unix socket), it wants HTTPS with a certificate it trusts.
So shoal makes a certificate authority once, under $SHOAL_HOME/tls, signs the router's
certificate with it for the names and addresses the router is reached at, and gives its
containers a CA bundle with the host's authorities and its own. Clients elsewhere trust it
through SSL_CERT_FILE pointing at a copy of that bundle ($SHOAL_HOME/tls/ca-bundle.pem).
"""

import datetime
import ipaddress
import os
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..worker.tls import ca_bundle, write_file

DIR = "tls"
CA_YEARS = 20
CERT_DAYS = 825  # what clients accept of a server certificate at most
RENEW_DAYS = 30  # a certificate this close to its end is made again at start


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _authority(directory: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca.key")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        with open(cert_path, "rb") as c, open(key_path, "rb") as k:
            return x509.load_pem_x509_certificate(c.read()), serialization.load_pem_private_key(k.read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"shoal CA on {socket.gethostname()}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # certificate and CRL signing only
        .sign(key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), private=True)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # in order, once each
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _current(path: str, names: list[x509.GeneralName]) -> bool:
    """The certificate at `path` names all of `names` and is not about to end."""
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    held = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ends = cert.not_valid_after_utc - datetime.timedelta(days=RENEW_DAYS)
    return all(n in held for n in names) and ends > datetime.datetime.now(datetime.timezone.utc)


def _issue(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: str, names: list[x509.GeneralName]
) -> tuple[bytes, bytes]:
    """A server certificate for `names`, signed by the CA, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def for_worker(home: str, hosts: list[str]) -> tuple[str, str]:
    """A certificate and key (PEM) for a joined worker's encrypted sandbox tunnels, for the names
    and addresses it is reached at, signed by shoal's CA (made first by `ensure`)."""
    ca_cert, ca_key = _authority(os.path.join(home, DIR))
    cert, key = _issue(ca_cert, ca_key, "shoal worker tunnels", _names(hosts))
    return cert.decode(), key.decode()


def ensure(home: str, hosts: list[str], host_bundle: str) -> tuple[str, str, str]:
    """The router's certificate and key for `hosts` (names or addresses), made or renewed as
    needed, and the CA bundle containers trust (the host's bundle, if any, and shoal's CA)."""
    directory = os.path.join(home, DIR)
    os.makedirs(directory, exist_ok=True)
    ca_cert, ca_key = _authority(directory)
    cert_path, key_path = os.path.join(directory, "router.pem"), os.path.join(directory, "router.key")
    names = _names(["localhost", "127.0.0.1", "::1", socket.gethostname(), *hosts])
    if not _current(cert_path, names):
        cert, key = _issue(ca_cert, ca_key, "shoal command router", names)
        write_file(key_path, key, private=True)
        write_file(cert_path, cert)
    bundle = os.path.join(directory, "ca-bundle.pem")
    write_file(bundle, ca_bundle(host_bundle, ca_cert.public_bytes(serialization.Encoding.PEM)))
    return cert_path, key_path, bundle


def ca_pem(home: str) -> str:
    """shoal's CA certificate, for workers elsewhere to add to their containers' bundle."""
    with open(os.path.join(home, DIR, "ca.pem")) as f:
        return f.read()
