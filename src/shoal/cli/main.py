"""`shoal` command line: run the platform and point the modal client at it."""

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import click

from ..control.platform import Settings

DEFAULT_PORT = 7470


def shoal_home() -> str:
    return os.environ.get("SHOAL_HOME") or os.path.expanduser("~/.local/share/shoal")


def _state_path(home: str) -> str:
    return os.path.join(home, "server.json")


def _token_path(home: str) -> str:
    return os.path.join(home, "token.json")


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _running_state(home: str) -> dict | None:
    state = _read_json(_state_path(home))
    return state if state and _alive(state["pid"]) else None


@click.group()
def main() -> None:
    """shoal: a self-hosted serverless platform for unmodified Modal apps."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, help="gRPC port; blobs are served on port+1.")
@click.option("--database", default="", help="postgresql:// URL (default: SQLite under SHOAL_HOME).")
@click.option("--detach", is_flag=True, help="Run in the background and return once it is ready.")
def up(host: str, port: int, database: str, detach: bool) -> None:
    """Start the platform: API, store, image builder and a local worker."""
    home = shoal_home()
    os.makedirs(home, exist_ok=True)
    if state := _running_state(home):
        message = f"shoal is already running (pid {state['pid']}) on port {state['port']}"
        if not detach:
            raise click.ClickException(message)
        click.echo(message)
        return
    if os.geteuid() != 0:
        raise click.ClickException("shoal runs containers with runc and overlayfs, which need root")
    if detach:
        _start_detached(home, host, port, database)
        return
    try:
        asyncio.run(_serve(home, host, port, database))
    except OSError as e:
        raise click.ClickException(f"shoal could not start: {e}") from None


async def _serve(home: str, host: str, port: int, database: str) -> None:
    from ..api.server import ShoalServer, serve_forever
    from ..control.tokens import Tokens

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = ShoalServer(Settings(home=home, database=database), host, port, port + 1)
    ready = asyncio.Event()
    serving = asyncio.create_task(serve_forever(server, ready))
    started = asyncio.create_task(ready.wait())
    await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        started.cancel()
        serving.result()  # a start-up failure (a port in use, say) ends the process with its error
    if _read_json(_token_path(home)) is None:
        token_id, secret = await Tokens(server.platform.db).create()
        _write_json(_token_path(home), {"token_id": token_id, "token_secret": secret})
    _write_json(
        _state_path(home),
        {"pid": os.getpid(), "host": host, "port": port, "http_port": port + 1, "database": database},
    )
    try:
        await serving
    finally:
        if (_read_json(_state_path(home)) or {}).get("pid") == os.getpid():
            os.unlink(_state_path(home))


def _start_detached(home: str, host: str, port: int, database: str) -> None:
    log_path = os.path.join(home, "server.log")
    args = [sys.executable, "-m", "shoal.cli.main", "up", "--host", host, "--port", str(port)]
    if database:
        args += ["--database", database]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"shoal exited during start-up; see {log_path}")
        state = _read_json(_state_path(home))
        if state and state["pid"] == proc.pid and _port_open(host, port):
            click.echo(f"shoal is up on http://{host}:{port} (pid {proc.pid}, logs in {log_path})")
            click.echo('Point the modal client at it with: eval "$(shoal env)"')
            return
        time.sleep(0.2)
    raise click.ClickException(f"shoal did not become ready in time; see {log_path}")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@main.command()
@click.option("--timeout", default=60, show_default=True, help="Seconds to wait for a clean stop.")
def down(timeout: int) -> None:
    """Stop the platform and every container it started."""
    home = shoal_home()
    state = _running_state(home)
    if state is None:
        click.echo("shoal is not running")
        return
    pid = state["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        _cleanup_containers(home)
    click.echo("shoal stopped")


def _cleanup_containers(home: str) -> None:
    from ..runtime import Runtime

    asyncio.run(Runtime(os.path.join(home, "runtime")).cleanup_all())


@main.command()
def env() -> None:
    """Print the environment that points the modal client at this shoal."""
    home = shoal_home()
    state = _read_json(_state_path(home))
    token = _read_json(_token_path(home))
    if state is None or token is None:
        raise click.ClickException("shoal has not been started here yet: run `shoal up --detach` first")
    click.echo(f"export MODAL_SERVER_URL=http://{state['host']}:{state['port']}")
    click.echo(f"export MODAL_TOKEN_ID={token['token_id']}")
    click.echo(f"export MODAL_TOKEN_SECRET={token['token_secret']}")


@main.group()
def token() -> None:
    """Manage API tokens."""


@token.command("new")
def token_new() -> None:
    """Create a new API token and print it."""
    from ..control.tokens import Tokens

    token_id, secret = _with_store(lambda db: Tokens(db).create())
    click.echo(f"export MODAL_TOKEN_ID={token_id}")
    click.echo(f"export MODAL_TOKEN_SECRET={secret}")


def _with_store(action):
    """Run `action(db)` on the store shoal uses here; the running server sees the change."""
    from ..control.errors import ShoalError
    from ..store.database import Database

    home = shoal_home()
    os.makedirs(home, exist_ok=True)
    database = (_read_json(_state_path(home)) or {}).get("database") or os.path.join(home, "shoal.db")

    async def run():
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


@main.group()
def webhooks() -> None:
    """URLs told of every deployment: each version switch is POSTed to them as JSON."""


@webhooks.command("add")
@click.argument("url")
def webhooks_add(url: str) -> None:
    """POST every deploy and rollback to URL."""
    from ..control.webhooks import Webhooks

    _with_store(lambda db: Webhooks(db).add(url))
    click.echo(f"Deployment events will be POSTed to {url}")


@webhooks.command("remove")
@click.argument("url")
def webhooks_remove(url: str) -> None:
    """Stop sending deployment events to URL."""
    from ..control.webhooks import Webhooks

    _with_store(lambda db: Webhooks(db).remove(url))
    click.echo(f"Removed {url}")


@webhooks.command("list")
def webhooks_list() -> None:
    """The URLs deployment events go to."""
    from ..control.webhooks import Webhooks

    for url in _with_store(lambda db: Webhooks(db).urls()):
        click.echo(url)


if __name__ == "__main__":
    main()
