"""The SNI filter's reading of a TLS ClientHello, as Python's own TLS client writes one, and its
matching of server names."""

import ssl

from shoal.runtime.sni_filter import matches, server_name


def client_hello(name: str | None) -> bytes:
    """The first record a TLS client sends to `name` (None: no SNI)."""
    context = ssl.create_default_context()
    context.check_hostname = name is not None
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_the_server_name_of_a_client_hello():
    assert server_name(client_hello("pypi.org")) == "pypi.org"
    assert server_name(client_hello("a.b.example.com")) == "a.b.example.com"
    assert server_name(client_hello(None)) is None


def test_what_is_not_a_client_hello_has_no_server_name():
    hello = client_hello("pypi.org")
    assert server_name(b"GET / HTTP/1.1\r\nHost: pypi.org\r\n\r\n") is None
    assert server_name(hello[:40]) is None  # cut short
    assert server_name(b"") is None


def test_names_match_exactly_or_under_a_wildcard():
    allowed = ["pypi.org", "*.github.com"]
    assert matches("pypi.org", allowed) and matches("PyPI.org.", allowed)
    assert matches("api.github.com", allowed) and matches("a.b.github.com", allowed)
    assert not matches("github.com", allowed)  # a wildcard is for the names under it
    assert not matches("evilpypi.org", allowed) and not matches("pypi.org.evil.com", allowed)
    assert not matches("notgithub.com", allowed)
    assert matches("anything.example", ["*"])
