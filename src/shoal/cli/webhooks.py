"""`shoal webhooks add|remove|list`: URLs told of every deployment."""

import click

from ..control.webhooks import Webhooks
from .state import with_store


@click.group()
def webhooks() -> None:
    """URLs told of every deployment: each version switch is POSTed to them as JSON."""


@webhooks.command("add")
@click.argument("url")
def add(url: str) -> None:
    """POST every deploy and rollback to URL."""
    with_store(lambda db: Webhooks(db).add(url))
    click.echo(f"Deployment events will be POSTed to {url}")


@webhooks.command("remove")
@click.argument("url")
def remove(url: str) -> None:
    """Stop sending deployment events to URL."""
    with_store(lambda db: Webhooks(db).remove(url))
    click.echo(f"Removed {url}")


@webhooks.command("list")
def list_() -> None:
    """The URLs deployment events go to."""
    for url in with_store(lambda db: Webhooks(db).urls()):
        click.echo(url)
