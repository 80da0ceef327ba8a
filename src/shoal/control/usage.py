"""Usage metering: what every container held, for how long, and what that costs.

A container is metered from its process's start to its exit (to now while it
runs; see containers.py) for the CPU and memory it reserved (its requests, or
the defaults when it made none) and the GPUs it was given. As Modal bills them,
CPU and memory count at the greater of the reservation and the actual use: what
a container used above its reservation, second by second (worker/excess.py), is
added, spread evenly over its life for a report that covers only part of it. Costs use
configurable prices per resource. For GPU functions it also answers the
owner's question: at the rate this traffic keeps a GPU busy, would a dedicated
one be cheaper?
"""

import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from sqlalchemy import or_, select

from ..store import schema as t
from ..store.database import Database

GROUPINGS = ("app", "function", "gpu", "environment")
PRICES_FILE = "prices.json"  # in $SHOAL_HOME


# Dollars per GPU-hour, serverless (while a container holds it) and dedicated (busy or not).
# Placeholders of the right order; dedicated at half, so the break-even is 50% busy.
_GPU_PRICES = {
    "T4": 0.60,
    "L4": 0.80,
    "A10G": 1.10,
    "A100-40GB": 2.10,
    "A100-80GB": 2.50,
    "L40S": 1.95,
    "H100": 4.00,
    "H200": 4.50,
    "B200": 6.25,
}


@dataclass
class Prices:
    """Dollars per hour. The defaults are placeholders: set your own in prices.json."""

    cpu_core: float = 0.05
    memory_gib: float = 0.008
    gpu: dict[str, float] = field(default_factory=lambda: dict(_GPU_PRICES))
    dedicated_gpu: dict[str, float] = field(default_factory=lambda: {t: p / 2 for t, p in _GPU_PRICES.items()})

    @classmethod
    def load(cls, path: str) -> "Prices":
        """prices.json overrides any of the defaults: {"cpu_core": .., "gpu": {"H100": ..}, ...}."""
        prices = cls()
        if not os.path.exists(path):
            return prices
        try:
            with open(path) as f:
                given = json.load(f)
            for key, value in given.items():
                current = getattr(prices, key, None)
                if current is None:
                    raise ValueError(f"unknown price {key!r}; the prices are {', '.join(asdict(prices))}")
                setattr(prices, key, {**current, **value} if isinstance(current, dict) else float(value))
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: {e}") from None
        return prices

    def per_hour(self, resource: str) -> float:
        """The price of one of `amounts`' resources: "CPU" (a core), "Memory" (a GiB), "GPU <type>"."""
        if resource == "CPU":
            return self.cpu_core
        if resource == "Memory":
            return self.memory_gib
        return self.gpu.get(resource.removeprefix("GPU "), 0.0)


@dataclass
class UsageRow:
    key: str
    containers: int = 0
    seconds: float = 0.0  # container lifetime
    cpu_core_seconds: float = 0.0
    memory_gib_seconds: float = 0.0
    gpu_seconds: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0


@dataclass
class GpuVerdict:
    """Whether the traffic of one GPU function would be cheaper on dedicated GPUs."""

    function: str
    gpu_type: str
    gpu_seconds: float
    window_seconds: float
    utilisation: float  # the share of the window a dedicated GPU would be busy
    serverless_cost: float
    dedicated_cost: float

    @property
    def dedicated_is_cheaper(self) -> bool:
        return self.dedicated_cost < self.serverless_cost


@dataclass
class Report:
    since: float
    until: float
    by: str
    rows: list[UsageRow]
    gpu_verdicts: list[GpuVerdict]

    def to_dict(self) -> dict:
        report = asdict(self)
        for verdict, data in zip(self.gpu_verdicts, report["gpu_verdicts"], strict=True):
            data["dedicated_is_cheaper"] = verdict.dedicated_is_cheaper
        return report


async def metered(db: Database, since: float, until: float) -> list:
    """The containers that ran at some time in [since, until), with their app's and function's names."""
    c = t.tasks.c
    query = (
        select(t.tasks, t.apps.c.name, t.apps.c.description, t.apps.c.environment, t.apps.c.tags, t.functions.c.tag)
        .join(t.apps, t.apps.c.app_id == c.app_id)
        .outerjoin(t.functions, t.functions.c.function_id == c.function_id)
        .where(c.state != "starting", c.started_at < until, or_(c.finished_at.is_(None), c.finished_at > since))
    )
    async with db.tx() as conn:
        return list((await conn.execute(query)).all())


def seconds_within(container, since: float, until: float) -> float:
    """How long a metered container ran within [since, until); one still running counts to `until`."""
    return max(0.0, min(container.finished_at or until, until) - max(container.started_at, since))


def amounts(container, seconds: float) -> dict[str, float]:
    """What a metered container used in `seconds` of its life, per resource: core-seconds of "CPU",
    GiB-seconds of "Memory", GPU-seconds of "GPU <type>"."""
    life = (container.finished_at or time.time()) - container.started_at
    share = seconds / life if life > 0 else 0.0
    used = {
        "CPU": seconds * container.milli_cpu / 1000 + share * container.cpu_excess_core_seconds,
        "Memory": seconds * container.memory_mb / 1024 + share * container.memory_excess_gib_seconds,
    }
    if container.gpu_count:
        used[f"GPU {container.gpu_type}"] = seconds * container.gpu_count
    return used


def resource_costs(used: dict[str, float], prices: Prices) -> dict[str, float]:
    """Dollars for what `amounts` gave, per resource."""
    return {resource: amount * prices.per_hour(resource) / 3600 for resource, amount in used.items()}


async def report(db: Database, prices: Prices, since: float, by: str, until: float | None = None) -> Report:
    if by not in GROUPINGS:
        raise ValueError(f"--by must be one of {', '.join(GROUPINGS)}, not {by!r}")
    until = until or time.time()
    containers = await metered(db, since, until)

    rows: dict[str, UsageRow] = {}
    per_function_gpu: dict[tuple[str, str], float] = defaultdict(float)
    gpus_per_container: dict[tuple[str, str], int] = {}
    for row in containers:
        seconds = seconds_within(row, since, until)
        app = row.name or row.description or row.app_id
        function = f"{app}.{row.tag or row.function_id}"
        key = {"app": app, "function": function, "gpu": row.gpu_type or "(none)", "environment": row.environment}[by]
        usage = rows.setdefault(key, UsageRow(key))
        used = amounts(row, seconds)
        usage.containers += 1
        usage.seconds += seconds
        usage.cpu_core_seconds += used["CPU"]
        usage.memory_gib_seconds += used["Memory"]
        usage.cost += sum(resource_costs(used, prices).values())
        if row.gpu_count:
            gpu_seconds = used[f"GPU {row.gpu_type}"]
            usage.gpu_seconds[row.gpu_type] = usage.gpu_seconds.get(row.gpu_type, 0.0) + gpu_seconds
            per_function_gpu[(function, row.gpu_type)] += gpu_seconds
            gpus_per_container[(function, row.gpu_type)] = row.gpu_count

    window = until - since if since else until - min((r.started_at for r in containers), default=until)
    verdicts = []
    for (function, gpu_type), gpu_seconds in sorted(per_function_gpu.items()):
        dedicated_gpus = gpus_per_container[(function, gpu_type)]
        verdicts.append(
            GpuVerdict(
                function,
                gpu_type,
                gpu_seconds,
                window,
                gpu_seconds / (window * dedicated_gpus) if window else 0.0,
                gpu_seconds * prices.gpu.get(gpu_type, 0.0) / 3600,
                window * dedicated_gpus * prices.dedicated_gpu.get(gpu_type, 0.0) / 3600,
            )
        )
    return Report(since, until, by, sorted(rows.values(), key=lambda r: -r.cost), verdicts)
