"""`shoal` command line: run the platform and point the modal client at it."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from ..worker.inventory import parse_fake_gpus
from .images import images
from .state import (
    alive,
    log_to_stderr,
    read_json,
    running_state,
    shoal_home,
    state_path,
    token_path,
    with_store,
    write_json,
)
from .usage import usage
from .webhooks import webhooks
from .worker import worker, workers

if TYPE_CHECKING:
    from ..control.platform import Settings

DEFAULT_PORT = 7470
_DOMAIN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


@click.group()
def main() -> None:
    """shoal: a self-hosted serverless platform for unmodified Modal apps."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=DEFAULT_PORT,
    show_default=True,
    help="gRPC port; blobs are on port+1, web endpoints on port+2, the command router on port+3.",
)
@click.option("--database", default="", help="postgresql:// URL (default: SQLite under SHOAL_HOME).")
@click.option("--detach", is_flag=True, help="Run in the background and return once it is ready.")
@click.option("--fake-gpus", default="", help="GPUs the local worker declares, for tests and demos: H100:2,A10G:1")
@click.option(
    "--no-local-worker", is_flag=True, help="Run containers only on workers that join (`shoal worker`), none here."
)
@click.option(
    "--url", default="", help="How clients and workers on other machines reach it, http://NAME:PORT [http://HOST:PORT]."
)
@click.option(
    "--web-domain",
    default="localhost",
    show_default=True,
    help="Web endpoints are at http://LABEL.DOMAIN:PORT+2; for other machines, a wildcard DNS record names this one.",
)
def up(
    host: str, port: int, database: str, detach: bool, fake_gpus: str, no_local_worker: bool, url: str, web_domain: str
) -> None:
    """Start the platform: API, store, image builder and a local worker."""
    home = shoal_home()
    os.makedirs(home, exist_ok=True)
    if state := running_state(home):
        message = f"shoal is already running (pid {state['pid']}) on port {state['port']}"
        if not detach:
            raise click.ClickException(message)
        click.echo(message)
        return
    try:
        parse_fake_gpus(fake_gpus)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--fake-gpus") from None
    if url and (urlsplit(url).scheme != "http" or not urlsplit(url).hostname):
        raise click.BadParameter(f"expected http://NAME:PORT, not {url!r}", param_hint="--url")
    if not _DOMAIN.fullmatch(web_domain):
        raise click.BadParameter(
            f"expected a domain such as shoal.example.com, not {web_domain!r}", param_hint="--web-domain"
        )
    if os.geteuid() != 0:
        raise click.ClickException("shoal runs containers with runc and overlayfs, which need root")
    if detach:
        _start_detached(home, host, port, database, fake_gpus, no_local_worker, url, web_domain)
        return
    # Imported here: the platform's imports take a second that other commands need not spend.
    from ..control.platform import Settings

    settings = Settings(
        home=home,
        database=database,
        fake_gpus=fake_gpus,
        local_worker=not no_local_worker,
        server_url=url,
        web_domain=web_domain.lower(),
    )
    try:
        asyncio.run(_serve(settings, host, port))
    except OSError as e:
        raise click.ClickException(f"shoal could not start: {e}") from None


async def _serve(settings: "Settings", host: str, port: int) -> None:
    from ..api.server import ShoalServer, serve_forever
    from ..control.tokens import Tokens

    log_to_stderr()
    home, database = settings.home, settings.database
    server = ShoalServer(settings, host, port, port + 1, port + 2, port + 3)
    ready = asyncio.Event()
    serving = asyncio.create_task(serve_forever(server, ready))
    started = asyncio.create_task(ready.wait())
    await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        started.cancel()
        serving.result()  # a start-up failure (a port in use, say) ends the process with its error
    if read_json(token_path(home)) is None:
        token_id, secret = await Tokens(server.platform.db).create()
        write_json(token_path(home), {"token_id": token_id, "token_secret": secret})
    write_json(
        state_path(home),
        {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "http_port": port + 1,
            "web_port": port + 2,
            "database": database,
            "url": settings.server_url,
        },
    )
    try:
        await serving
    finally:
        if (read_json(state_path(home)) or {}).get("pid") == os.getpid():
            os.unlink(state_path(home))


def _start_detached(
    home: str, host: str, port: int, database: str, fake_gpus: str, no_local_worker: bool, url: str, web_domain: str
) -> None:
    log_path = os.path.join(home, "server.log")
    args = [sys.executable, "-m", "shoal.cli.main", "up", "--host", host, "--port", str(port)]
    if database:
        args += ["--database", database]
    if fake_gpus:
        args += ["--fake-gpus", fake_gpus]
    if no_local_worker:
        args.append("--no-local-worker")
    if url:
        args += ["--url", url]
    args += ["--web-domain", web_domain]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            args, stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                last = next((line.strip() for line in reversed(f.readlines()) if line.strip()), "")
            raise click.ClickException(f"shoal exited during start-up: {last}\n(the whole log: {log_path})")
        state = read_json(state_path(home))
        if state and state["pid"] == proc.pid and _port_open(host, port):
            click.echo(f"shoal is up on {url or f'http://{host}:{port}'} (pid {proc.pid}, logs in {log_path})")
            click.echo(f"Web endpoints are served at http://LABEL.{web_domain}:{port + 2}")
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
    state = running_state(home)
    if state is None:
        # A shoal that died without `shoal down` (killed, crashed) left its containers running.
        left = _cleanup_containers(home) if os.path.isdir(os.path.join(home, "runtime")) else 0
        click.echo("shoal is not running" + (f"; stopped {left} container{'s' * (left > 1)} it left" if left else ""))
        return
    pid = state["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        _cleanup_containers(home)
    click.echo("shoal stopped")


def _cleanup_containers(home: str) -> int:
    """Stops and removes every container under the home's runtime; returns how many there were."""
    from ..runtime import Runtime

    return asyncio.run(Runtime(os.path.join(home, "runtime")).cleanup_all())


@main.command()
def env() -> None:
    """Print the environment that points the modal client at this shoal."""
    home = shoal_home()
    state = read_json(state_path(home))
    token = read_json(token_path(home))
    if state is None or token is None:
        raise click.ClickException("shoal has not been started here yet: run `shoal up --detach` first")
    url = state.get("url") or f"http://{state['host']}:{state['port']}"
    click.echo(f"export MODAL_SERVER_URL={url}")
    click.echo(f"export MODAL_TOKEN_ID={token['token_id']}")
    click.echo(f"export MODAL_TOKEN_SECRET={token['token_secret']}")


@main.group()
def token() -> None:
    """Manage API tokens."""


@token.command("new")
def token_new() -> None:
    """Create a new API token and print it."""
    from ..control.tokens import Tokens

    token_id, secret = with_store(lambda db: Tokens(db).create())
    click.echo(f"export MODAL_TOKEN_ID={token_id}")
    click.echo(f"export MODAL_TOKEN_SECRET={secret}")


main.add_command(images)
main.add_command(usage)
main.add_command(webhooks)
main.add_command(worker)
main.add_command(workers)

if __name__ == "__main__":
    main()
