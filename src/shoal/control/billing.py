"""Modal's billing views of the usage meter: cost per app and interval, month summaries, rates.

`modal billing report`, `Workspace.billing` and `Environment.billing` read the same metering
and prices as `shoal usage` (see usage.py), cut at UTC hour or day boundaries. As in Modal, a
report starts at the beginning of its first interval and leaves out a partial last one.
"""

import calendar
import json
import time
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from ..store.database import Database
from .errors import InvalidArgument
from .usage import Prices, amounts, metered, resource_costs, seconds_within

RESOLUTIONS = {"h": 3600, "d": 86400}
MAX_INTERVALS = 24 * 366  # a year of hours: a larger report is asked for in parts
_PRECISION = Decimal("1e-9")  # dollars; a small container's second costs about 1e-6


@dataclass
class BillingItem:
    """What one app cost in one interval."""

    app_id: str
    description: str
    environment: str
    interval_start: float
    cost_by_resource: dict[str, Decimal]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def cost(self) -> Decimal:
        return sum(self.cost_by_resource.values(), Decimal(0))


@dataclass
class Summary:
    start: float
    end: float
    cost_by_resource: dict[str, Decimal]

    @property
    def cost(self) -> Decimal:
        return sum(self.cost_by_resource.values(), Decimal(0))


def _dollars(value: float) -> Decimal:
    return Decimal(value).quantize(_PRECISION)


async def report(
    db: Database,
    prices: Prices,
    start: float,
    end: float,
    resolution: str,
    tag_names: Collection[str] = (),
    environments: Collection[str] = (),
    app_ids: Collection[str] = (),
) -> list[BillingItem]:
    """Cost per app per interval in [start, end), oldest first; `tag_names` ("*" for all) picks the tags shown."""
    step = RESOLUTIONS.get(resolution)
    if step is None:
        raise InvalidArgument(f"Resolution must be 'h' (hourly) or 'd' (daily), not {resolution!r}")
    first, last = start - start % step, end - end % step
    if (last - first) / step > MAX_INTERVALS:
        raise InvalidArgument(f"A report covers at most {MAX_INTERVALS:,} intervals; ask for a shorter range")
    stop = min(last, time.time())  # the current interval counts to now
    costs: dict[tuple[float, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    apps = {}
    for container in await metered(db, first, stop):
        if (environments and container.environment not in environments) or (
            app_ids and container.app_id not in app_ids
        ):
            continue
        apps[container.app_id] = container
        begin = max(container.started_at, first)
        interval = begin - begin % step
        while interval < min(container.finished_at or stop, stop):
            seconds = seconds_within(container, interval, min(interval + step, stop))
            for resource, dollars in resource_costs(amounts(container, seconds), prices).items():
                costs[(interval, container.app_id)][resource] += dollars
            interval += step
    items = []
    for (interval, app_id), by_resource in sorted(costs.items()):
        app = apps[app_id]
        tags = _tags(app.tags, tag_names)
        cost_by_resource = {r: _dollars(d) for r, d in sorted(by_resource.items())}
        items.append(
            BillingItem(app_id, app.name or app.description, app.environment, interval, cost_by_resource, tags)
        )
    return items


def _tags(tags_json: str, names: Collection[str]) -> dict[str, str]:
    tags = json.loads(tags_json)
    return tags if "*" in names else {k: v for k, v in tags.items() if k in names}


async def summary(db: Database, prices: Prices, month_start: float, environment: str = "") -> Summary:
    """Cost of the calendar month (UTC) that starts at `month_start`, per resource; of one environment if named."""
    begin = datetime.fromtimestamp(month_start, UTC)
    if (begin.day, begin.hour, begin.minute, begin.second, begin.microsecond) != (1, 0, 0, 0, 0):
        raise InvalidArgument("A billing summary starts on the first of a month, 00:00 UTC")
    days = calendar.monthrange(begin.year, begin.month)[1]
    end = month_start + days * 86400
    stop = min(end, time.time())
    totals: dict[str, float] = defaultdict(float)
    for container in await metered(db, month_start, stop):
        if environment and container.environment != environment:
            continue
        used = amounts(container, seconds_within(container, month_start, stop))
        for resource, dollars in resource_costs(used, prices).items():
            totals[resource] += dollars
    return Summary(month_start, end, {r: _dollars(d) for r, d in sorted(totals.items())})


def rates(prices: Prices) -> dict[str, Decimal]:
    """Dollars per second: per CPU core, per GiB of memory, per GPU of each type."""
    per_hour = {"CPU": prices.cpu_core, "Memory": prices.memory_gib} | {f"GPU {t}": p for t, p in prices.gpu.items()}
    return {resource: _dollars(price / 3600) for resource, price in per_hour.items()}
