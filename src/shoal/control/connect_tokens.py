"""Sandbox connect tokens (`Sandbox.create_connect_token()`): HTTP and WebSocket connections to a
port of a running sandbox (8080 unless the token names another) through shoal's web front.

Each sandbox has a host of its own there (`sandbox-{hash of its id}.{domain}`). A request with a
token of that sandbox, in an `Authorization: Bearer` header, a `_modal_connect_token` query
parameter or a cookie of that name, is passed on to the sandbox's port with the token's user
metadata in `X-Verified-User-Data`, which the sandbox can trust: a client's own is dropped. A
token is a JWT signed with a key of shoal's own and lasts as long as its sandbox runs.
"""

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from .errors import NotFound, Unauthenticated

LABEL_PREFIX = "sandbox-"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Connection:
    task_id: str  # the sandbox's container
    port: int
    user_metadata: str
    inbound: list[str] | None  # the networks it takes connections from (inbound_cidr_allowlist); None: any


def label_of(sandbox_id: str) -> str:
    """The sandbox's host label: its id's hash, as a host name is not case-sensitive and an id is."""
    return LABEL_PREFIX + hashlib.sha256(sandbox_id.encode()).hexdigest()[:24]


class ConnectTokens:
    def __init__(
        self,
        secret: bytes,
        running: Callable[[str], str],
        inbound: Callable[[str], list[str] | None],
        url_of: Callable[[str], str],
    ):
        self._secret = hmac.new(secret, b"sandbox connect tokens", hashlib.sha256).digest()
        # sandbox id -> its container's task id ("" before it runs); NotFound once it ended
        self.running = running
        self.inbound = inbound  # sandbox id -> its inbound_cidr_allowlist, None for none
        self.url_of = url_of  # label -> the URL clients reach it at

    def create(self, sandbox_id: str, port: int, user_metadata: str) -> tuple[str, str]:
        """(URL, token) for connections to a running sandbox's `port`."""
        self.running(sandbox_id)  # not ended: else NotFound
        claims = {"sandbox_id": sandbox_id, "port": port or DEFAULT_PORT, "user_metadata": user_metadata}
        return self.url_of(label_of(sandbox_id)), jwt.encode(claims, self._secret, algorithm="HS256")

    def connection(self, label: str, token: str) -> Connection:
        """Where a request to `label` bearing `token` goes. Unauthenticated: no token, or not one of
        that sandbox's; NotFound: the sandbox has ended."""
        if not token:
            raise Unauthenticated("a sandbox connect token is needed (Authorization: Bearer, or _modal_connect_token)")
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"])
        except jwt.InvalidTokenError as e:
            raise Unauthenticated(f"invalid sandbox connect token: {e}") from None
        sandbox_id = claims.get("sandbox_id", "")
        if label_of(sandbox_id) != label:
            raise Unauthenticated("the connect token is another sandbox's")
        if not (task_id := self.running(sandbox_id)):
            raise NotFound(f"Sandbox {sandbox_id} has not started yet")
        return Connection(task_id, int(claims["port"]), claims.get("user_metadata", ""), self.inbound(sandbox_id))
