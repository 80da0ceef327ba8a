"""Sandbox connect tokens: a token opens its own sandbox's host alone, and only while it runs."""

import pytest

from shoal.control.connect_tokens import ConnectTokens, label_of
from shoal.control.errors import NotFound, Unauthenticated


def tokens(sandboxes: dict[str, str]) -> ConnectTokens:
    def running(sandbox_id: str) -> str:
        if sandbox_id not in sandboxes:
            raise NotFound(f"Sandbox {sandbox_id} is not running")
        return sandboxes[sandbox_id]

    return ConnectTokens(b"secret", running, lambda sandbox_id: None, lambda label: f"http://{label}.localhost:7472")


def test_a_token_opens_its_sandboxs_port_with_its_metadata():
    connect = tokens({"sb-One": "ta-1", "sb-two": "ta-2"})
    url, token = connect.create("sb-One", 0, '{"user": "ana"}')
    label = label_of("sb-One")
    assert url == f"http://{label}.localhost:7472" and label == label.lower() != label_of("sb-one")
    found = connect.connection(label, token)
    assert (found.task_id, found.port, found.user_metadata) == ("ta-1", 8080, '{"user": "ana"}')
    _, other = connect.create("sb-two", 9000, "")
    assert connect.connection(label_of("sb-two"), other).port == 9000


def test_a_token_opens_nothing_else():
    sandboxes = {"sb-1": "ta-1", "sb-2": "ta-2", "sb-3": ""}
    connect = tokens(sandboxes)
    _, token = connect.create("sb-1", 8080, "")
    with pytest.raises(Unauthenticated):
        connect.connection(label_of("sb-2"), token)  # another sandbox's host
    with pytest.raises(Unauthenticated):
        connect.connection(label_of("sb-1"), "")
    with pytest.raises(Unauthenticated):
        connect.connection(label_of("sb-1"), token + "x")
    with pytest.raises(Unauthenticated):  # signed with another key
        ConnectTokens(b"other", lambda s: "ta-1", lambda s: None, str).connection(label_of("sb-1"), token)
    _, starting = connect.create("sb-3", 8080, "")
    with pytest.raises(NotFound, match="has not started yet"):
        connect.connection(label_of("sb-3"), starting)
    del sandboxes["sb-1"]
    with pytest.raises(NotFound):
        connect.connection(label_of("sb-1"), token)
    with pytest.raises(NotFound):
        connect.create("sb-1", 8080, "")
