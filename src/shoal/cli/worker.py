"""`shoal worker`: join a control plane from this process or machine and run its containers;
`shoal workers`: the pool the running shoal places containers on."""

import asyncio
import fcntl
import json
import os
import signal
import socket

import click
from rich.table import Table

from ..worker.inventory import parse_fake_gpus
from .state import admin_request, console, human_size, log_to_stderr, shoal_home


@click.command()
@click.option("--server", required=True, help="The control plane's URL, as clients use it: http://HOST:PORT")
@click.option(
    "--token", required=True, envvar="SHOAL_WORKER_TOKEN", help="An API token as ID:SECRET (see `shoal token new`)."
)
@click.option("--name", default=socket.gethostname(), show_default=True, help="How the pool calls this worker.")
@click.option("--home", default="", help="Where it keeps fetched images and its containers [SHOAL_HOME/workers/NAME].")
@click.option(
    "--cache",
    default="",
    help="Where images fetched from the control plane are kept [HOME]; workers on one machine may share it.",
)
@click.option(
    "--cache-limit",
    default="50%",
    show_default=True,
    help="The most the cache may hold, as 20G, 512M or a percentage of its file system; beyond it the "
    "least recently used images and code no container uses are removed.",
)
@click.option("--fake-gpus", default="", help="GPUs it declares, for tests and demos: H100:2,A10G:1")
@click.option(
    "--volumes",
    default="",
    help="The control plane's volumes (its SHOAL_HOME/volumes) as this machine sees them on a shared file "
    "system; functions with volumes run only on workers that have it.",
)
def worker(
    server: str, token: str, name: str, home: str, cache: str, cache_limit: str, fake_gpus: str, volumes: str
) -> None:
    """Join the control plane at --server and run the containers it places here."""
    from ..worker.fetched import parse_limit
    from ..worker.joined import JoinedWorker, server_address

    token_id, _, token_secret = token.partition(":")
    if not token_id or not token_secret:
        raise click.BadParameter("expected ID:SECRET", param_hint="--token")
    try:
        server_address(server)
        parse_fake_gpus(fake_gpus)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if volumes and not os.path.isdir(volumes):
        raise click.BadParameter(f"{volumes} is not a directory", param_hint="--volumes")
    if os.geteuid() != 0:
        raise click.ClickException("a worker runs containers with runc and overlayfs, which need root")
    home = home or os.path.join(shoal_home(), "workers", name)
    cache = cache or home
    os.makedirs(cache, exist_ok=True)
    try:
        limit = parse_limit(cache_limit, cache)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--cache-limit") from None
    os.makedirs(home, exist_ok=True)
    # A worker clears its home's containers when it starts: a second one there would kill the first's.
    lock = open(os.path.join(home, "worker.lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise click.ClickException(
            f"another worker is running in {home}; give this one its own --name or --home"
        ) from None
    log_to_stderr()

    async def run() -> None:
        # Made here: its gRPC channels belong to this event loop.
        joined = JoinedWorker(server, token_id, token_secret, home, name, fake_gpus, cache, limit, volumes)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await joined.run(stop)

    from grpclib import GRPCError

    try:
        asyncio.run(run())
    except GRPCError as e:
        raise click.ClickException(f"the control plane refused this worker: {e.message}") from None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def workers(as_json: bool) -> None:
    """List the workers containers are placed on: what each has, what is free, how many containers it runs,
    how busy its CPUs were in the last second, and what a joined worker's cache holds of its limit."""
    rows = admin_request("GET", "/admin/workers")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for name in ("Worker", "CPUs free", "Memory free", "GPUs free", "Containers", "CPUs busy", "Cache"):
        table.add_column(name, no_wrap=True)

    def gpus(free: dict[str, int], total: dict[str, int]) -> str:
        return ", ".join(f"{t} {free.get(t, 0)}/{n}" for t, n in total.items()) or "-"

    def cache(held: int | None, limit: int | None) -> str:
        if limit is None:
            return "-"
        return f"{'?' if held is None else human_size(held)}/{human_size(limit)}"

    for r in rows:
        table.add_row(
            r["name"],
            f"{r['free_cpus']:g}/{r['cpus']:g}",
            f"{r['free_memory_mb']}/{r['memory_mb']} MiB",
            gpus(r["free_gpus"], r["gpus"]),
            str(r["containers"]),
            f"{r['cpu_busy']:.0%}",
            cache(r["cache_bytes"], r["cache_limit_bytes"]),
        )
    console().print(table)
