"""`shoal images ls|du|gc|bootstrap|import`: inspect, clean and seed the image store of the running shoal."""

import json
import time

import click
from rich.table import Table

from .state import admin_request, console, human_size


@click.group()
def images() -> None:
    """Inspect and clean the image store."""


@images.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ls(as_json: bool) -> None:
    """List images: id, when built, size, layers, and what they were built from."""
    rows = admin_request("GET", "/admin/images")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    for name in ("Image", "Created", "Status", "Size", "Layers"):
        table.add_column(name, no_wrap=True)
    table.add_column("From", overflow="fold")
    table.add_column("Last step", overflow="ellipsis", no_wrap=True, max_width=40)
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"]))
        table.add_row(
            row["image_id"], created, row["status"], human_size(row["bytes"]), str(len(row["layer_ids"])),
            row["source"], row["step"],
        )  # fmt: skip
    console().print(table)


@images.command("du")
@click.argument("image_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def du(image_ids: tuple[str, ...], as_json: bool) -> None:
    """Logical size of the images against what is stored, and the ratio between them.

    With IMAGE_IDS, only those images and what they store.
    """
    figures = admin_request("GET", "/admin/images/usage", [("image_id", i) for i in image_ids])
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    table = Table("Images", "Layers", "Files", "Logical", "Layers' size", "Stored", "Dedup ratio")
    table.add_row(
        str(figures["images"]),
        str(figures["layers"]),
        str(figures["files"]),
        human_size(figures["logical_bytes"]),
        human_size(figures["layer_bytes"]),
        human_size(figures["stored_bytes"]),
        f"{figures['dedup_ratio']:.2f}×",
    )
    console().print(table)


@images.command("gc")
def gc() -> None:
    """Remove images no live app uses, then unused layers and files."""
    result = admin_request("POST", "/admin/images/gc")
    click.echo(f"removed {result['layers']} layers and {result['files']} files, freeing {human_size(result['bytes'])}")


@images.command("bootstrap")
def bootstrap() -> None:
    """Build the python base images Debian's packages provide (for hosts without a registry)."""
    built = admin_request("POST", "/admin/images/bootstrap")
    table = Table("name", "python", "layers")
    for image in built:
        table.add_row(image["name"], image["python"], ", ".join(layer[:12] for layer in image["layer_ids"]))
    console().print(table)


@images.command("import")
@click.argument("name")
@click.argument("source", type=click.Path(exists=True, resolve_path=True))
@click.option("--python", help="The Python series the image runs (3.12), where its /usr/bin/python3 does not say.")
def import_(name: str, source: str, python: str | None) -> None:
    """Make a root file system on this machine the base image NAME, for hosts that reach no registry.

    SOURCE is a directory or a tar archive of one (`docker export` writes one). FROM NAME, that is
    modal.Image.from_registry("NAME"), then starts from it. Importing an unchanged SOURCE again
    copies nothing. As with a registry tag that moves, images already built from NAME keep what
    they were built on until they are built again (force_build).
    """
    query = [("name", name), ("source", source)] + ([("python", python)] if python else [])
    image = admin_request("POST", "/admin/images/import", query)
    done = "imported" if image["copied"] else "already imported"
    click.echo(f"{name}: {done} (layer {image['layer_ids'][0][:12]}, Python {image['python']})")
