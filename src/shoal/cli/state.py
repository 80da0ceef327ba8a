"""Where the running shoal leaves its address and the first token, under SHOAL_HOME;
the store it uses, for commands that change it directly; its admin routes, for the rest."""

import asyncio
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from ..api import host_proof

T = TypeVar("T")


def shoal_home() -> str:
    return os.environ.get("SHOAL_HOME") or os.path.expanduser("~/.local/share/shoal")


def state_path(home: str) -> str:
    return os.path.join(home, "server.json")


def token_path(home: str) -> str:
    return os.path.join(home, "token.json")


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    """The process runs: it exists and is not a zombie (an init that does not reap, as in many
    containers, leaves a killed shoal as one)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def running_state(home: str) -> dict | None:
    state = read_json(state_path(home))
    return state if state and alive(state["pid"]) else None


def with_store(action: Callable[..., Awaitable[T]]) -> T:
    """Run `action(db)` on the store shoal uses here (the running server sees the change)."""
    from ..control.errors import ShoalError
    from ..store.database import Database

    home = shoal_home()
    os.makedirs(home, exist_ok=True)
    database = (read_json(state_path(home)) or {}).get("database") or os.path.join(home, "shoal.db")

    async def run() -> T:
        db = Database(database)
        await db.create_schema()
        try:
            return await action(db)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except ShoalError as e:
        raise click.ClickException(str(e)) from None


def admin_request(method: str, path: str, query: list[tuple[str, str]] | None = None) -> Any:
    """A call to the running shoal's admin routes (its HTTP port, the token `shoal up` saved)."""
    home = shoal_home()
    state = running_state(home)
    token = read_json(token_path(home))
    if state is None or token is None:
        raise click.ClickException("shoal is not running here: start it with `shoal up --detach`")
    url = f"http://{state['host']}:{state['http_port']}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"x-modal-token-id": token["token_id"], "x-modal-token-secret": token["token_secret"]}
    try:
        with open(os.path.join(home, host_proof.SECRET_FILE), "rb") as f:
            headers[host_proof.HEADER] = host_proof.host_proof(f.read())
    except OSError:
        pass  # not the server's owner: routes that need the proof say so
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        raise click.ClickException(f"shoal answered {e.code}: {e.read().decode(errors='replace')}") from None
    except urllib.error.URLError as e:
        raise click.ClickException(f"cannot reach shoal at {url}: {e.reason}") from None


def console() -> Console:
    """Rich's console; piped output gets whole lines (ids in full) rather than 80 columns."""
    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=200)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def log_to_stderr() -> None:
    """How the server and workers log: their own lines, and grpclib's warnings only (a container ends
    its wait for a web request's body by cancelling it, once per request)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("grpclib.server").setLevel(logging.WARNING)
