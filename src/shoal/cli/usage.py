"""`shoal usage`: what containers held or used and for how long, its cost, and the GPU verdict."""

import json
import os
import re
import time
from datetime import datetime

import click
from rich.table import Table

from ..control.usage import GROUPINGS, PRICES_FILE, Prices, report
from .state import console, shoal_home, with_store

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> float:
    """'90m', '2h', '7d' ago, or an ISO date/time; '' is the beginning."""
    if not value:
        return 0.0
    if m := _RELATIVE.fullmatch(value):
        return time.time() - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r}: use 30m, 2h, 7d or an ISO date", param_hint="--since") from None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.3f} h"


@click.command()
@click.option("--since", default="", help="Start of the period: 30m, 2h, 7d or an ISO date (default: everything).")
@click.option("--by", type=click.Choice(GROUPINGS), default="app", show_default=True, help="Group by.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def usage(since: str, by: str, as_json: bool) -> None:
    """Container time, CPU, memory and GPU use, with its cost at the prices in $SHOAL_HOME/prices.json.

    CPU and memory count each second at the greater of the reservation and the actual use."""
    try:
        prices = Prices.load(os.path.join(shoal_home(), PRICES_FILE))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    result = with_store(lambda db: report(db, prices, _since(since), by))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    out = console()
    table = Table(by.capitalize(), "Containers", "Container time", "CPU core-h", "Memory GiB-h", "GPU-h", "Cost")
    for row in result.rows:
        gpus = ", ".join(f"{t} {_hours(s)}" for t, s in sorted(row.gpu_seconds.items())) or "-"
        table.add_row(
            row.key, str(row.containers), _hours(row.seconds), f"{row.cpu_core_seconds / 3600:.3f}",
            f"{row.memory_gib_seconds / 3600:.3f}", gpus, f"${row.cost:.2f}",
        )  # fmt: skip
    out.print(table)
    if result.gpu_verdicts:
        verdicts = Table("GPU function", "GPU", "Busy", "Serverless", "Dedicated", "Cheaper")
        for v in result.gpu_verdicts:
            verdicts.add_row(
                v.function, v.gpu_type, f"{v.utilisation:.0%}", f"${v.serverless_cost:.2f}",
                f"${v.dedicated_cost:.2f}", "dedicated" if v.dedicated_is_cheaper else "serverless",
            )  # fmt: skip
        out.print(verdicts)
