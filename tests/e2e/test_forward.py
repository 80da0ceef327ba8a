"""modal.forward() in a function: its port reached from outside, over TLS or as it is, until the
tunnel closes."""


def test_a_forwarded_port_is_reached_from_outside_until_it_closes(shoal):
    out = shoal.modal("run", "forward.py", "--ca-bundle", str(shoal.home / "tls" / "ca-bundle.pem")).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["url"].startswith("https://127.0.0.1:")
    assert lines["https"] == lines["tcp"] == lines["task"]  # the function's own server, both ways
    assert lines["h2 alpn"] == "h2"
    assert lines["twice"] == "InvalidError: Port 8790 is already forwarded"
    assert lines["after"] == "ConnectionRefusedError"  # closed with the `with` block
