"""A function's metrics over time, as `modal function metrics` and `Function.metrics` export them.

The range is cut into buckets of one width, their bounds rounded down to multiples of it (UTC),
the partial bucket at the end left out. Each series has a value per bucket, None where nothing
was observed. Calls count by the bucket they were queued in, as `modal function stats` counts
them; containers by when they ran; their CPU, memory and GPU utilisation from the samples taken
every SAMPLE_INTERVAL while they run (containers.py).
"""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select

from ..store import schema as t
from ..store.database import Database
from .call_history import TIMED_OUT, CallHistory, Status, percentiles
from .containers import SAMPLE_INTERVAL, usage_samples
from .errors import InvalidArgument

# The widths a range is cut into when none is asked for, as Modal offers them (seconds).
BUCKET_WIDTHS = (60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800, 3600, 7200, 10800, 14400, 28800, 43200, 86400)
TARGET_BUCKETS = 100
MAX_BUCKETS = 500
MAX_RANGE = 31 * 86400


@dataclass(frozen=True)
class Series:
    name: str  # ends with its aggregation: count, avg, max, p50...
    unit: str
    description: str


@dataclass(frozen=True)
class Group:
    name: str
    description: str
    series: tuple[Series, ...]


GROUPS = (
    Group(
        "calls",
        "The inputs queued in each bucket, by how they ended, and how long they ran",
        (
            Series("successful_calls_count", "count", "Inputs that succeeded"),
            Series("failed_calls_count", "count", "Inputs that failed"),
            Series("timed_out_calls_count", "count", "Inputs that ran out of time"),
            Series("execution_time_p50", "s", "Median time from an input's start to its output"),
            Series("execution_time_p99", "s", "99th percentile of that time"),
        ),
    ),
    Group(
        "containers",
        "The function's containers",
        (
            Series("running_containers_max", "count", "The most containers running at once"),
            Series("started_containers_count", "count", "Containers whose process started"),
        ),
    ),
    Group(
        "cpu",
        "CPU the function's containers used, sampled every few seconds",
        (
            Series("cpu_usage_avg", "cores", "Cores used by all its containers together, on average"),
            Series("container_cpu_usage_max", "cores", "The most cores one container used"),
        ),
    ),
    Group(
        "memory",
        "Memory the function's containers held (file cache aside), sampled every few seconds",
        (
            Series("memory_usage_avg", "GiB", "Memory held by all its containers together, on average"),
            Series("container_memory_usage_max", "GiB", "The most memory one container held"),
        ),
    ),
    Group(
        "gpu",
        "How busy the NVIDIA GPUs given to the function's containers were, sampled every few seconds",
        (
            Series("gpu_utilization_avg", "%", "Utilisation of its containers' GPUs, on average"),
            Series("gpu_utilization_max", "%", "The highest utilisation one container's GPUs had"),
        ),
    ),
)
_BY_NAME = {g.name: g for g in GROUPS}


@dataclass(frozen=True)
class Buckets:
    start: float
    width: int
    count: int

    @property
    def stop(self) -> float:
        return self.start + self.width * self.count

    def index(self, at: float) -> int | None:
        n = math.floor((at - self.start) / self.width)
        return n if 0 <= n < self.count else None


def buckets(since: float, until: float, width: int = 0) -> Buckets:
    """The buckets of [since, until): of `width` seconds, or of the width nearest 100 of them."""
    if since >= until:
        raise InvalidArgument("since must be before until")
    if until - since > MAX_RANGE:
        raise InvalidArgument("A metrics range is at most 31 days")
    if not width:
        width = min(BUCKET_WIDTHS, key=lambda w: abs((until - since) / w - TARGET_BUCKETS))
    elif width < 60:
        raise InvalidArgument("bucket_secs must be at least 60")
    start, stop = since // width * width, until // width * width
    count = int((stop - start) // width)
    if count > MAX_BUCKETS:
        raise InvalidArgument(f"At most {MAX_BUCKETS} points a series: make the buckets wider")
    return Buckets(start, width, count)


def groups(names: Sequence[str]) -> list[Group]:
    """The groups asked for, every one when none is named."""
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise InvalidArgument(
            f"No metrics group {', '.join(map(repr, unknown))} here; the groups are {', '.join(_BY_NAME)}"
        )
    return [_BY_NAME[n] for n in dict.fromkeys(names)] if names else list(GROUPS)


class Metrics:
    def __init__(self, db: Database, call_history: CallHistory):
        self.db = db
        self.call_history = call_history

    async def export(
        self, function_ids: Sequence[str], span: Buckets, chosen: Sequence[Group]
    ) -> list[tuple[Series, list[float | None]]]:
        """Each series of the chosen groups, a value per bucket."""
        values: dict[str, list[float | None]] = {}
        names = {g.name for g in chosen}
        if "calls" in names:
            values |= await self._calls(function_ids, span)
        if "containers" in names:
            values |= await self._containers(function_ids, span)
        if names & {"cpu", "memory", "gpu"}:
            values |= await self._usage(function_ids, span)
        return [(series, values[series.name]) for g in chosen for series in g.series]

    async def _calls(self, function_ids: Sequence[str], span: Buckets) -> dict[str, list[float | None]]:
        ended = {
            "successful_calls_count": [0.0] * span.count,
            "failed_calls_count": [0.0] * span.count,
            "timed_out_calls_count": [0.0] * span.count,
        }
        execution: list[list[float]] = [[] for _ in range(span.count)]
        for r in await self.call_history.inputs(function_ids, span.start, span.stop):
            n = span.index(r.enqueued_at)
            if n is None or r.finished_at is None:
                continue
            if r.status == Status.FUNCTION_CALL_INPUT_STATUS_SUCCESS:
                ended["successful_calls_count"][n] += 1
            elif r.status in TIMED_OUT:
                ended["timed_out_calls_count"][n] += 1
            else:
                ended["failed_calls_count"][n] += 1
            if r.started_at:
                execution[n].append(r.finished_at - r.started_at)
        cuts = [percentiles(v) for v in execution]
        return ended | {
            "execution_time_p50": [p.get(5000) for p in cuts],
            "execution_time_p99": [p.get(9900) for p in cuts],
        }

    async def _containers(self, function_ids: Sequence[str], span: Buckets) -> dict[str, list[float | None]]:
        c = t.tasks.c
        query = select(c.started_at, c.finished_at).where(
            c.function_id.in_(function_ids),
            c.state != "starting",
            c.started_at < span.stop,
            or_(c.finished_at.is_(None), c.finished_at > span.start),
        )
        async with self.db.tx() as conn:
            rows = (await conn.execute(query)).all()
        # One stopped before its process ran has no life (containers.py); one running, to now.
        now = time.time()
        lives = [(r.started_at, r.finished_at or now) for r in rows if r.finished_at != r.started_at]
        started = [0.0] * span.count
        for begin, _ in lives:
            if (n := span.index(begin)) is not None:
                started[n] += 1
        # The most running at once in a bucket: a sweep over starts (+1) and ends (-1) in time order,
        # an end before a start at the same moment.
        events = sorted([(b, 1) for b, _ in lives] + [(e, -1) for _, e in lives])
        most, running, i = [], 0, 0
        for n in range(span.count):
            low, high = span.start + n * span.width, span.start + (n + 1) * span.width
            while i < len(events) and events[i][0] <= low:
                running += events[i][1]
                i += 1
            peak = running
            while i < len(events) and events[i][0] < high:
                running += events[i][1]
                peak = max(peak, running)
                i += 1
            most.append(float(peak))
        return {"running_containers_max": most, "started_containers_count": started}

    async def _usage(self, function_ids: Sequence[str], span: Buckets) -> dict[str, list[float | None]]:
        cores: list[list[float]] = [[] for _ in range(span.count)]
        memory: list[list[float]] = [[] for _ in range(span.count)]
        gpu: list[list[float]] = [[] for _ in range(span.count)]
        for row in await usage_samples(self.db, function_ids, span.start, span.stop):
            if (n := span.index(row.at)) is not None:
                cores[n].append(row.cores)
                memory[n].append(row.memory_gib)
                if row.gpu_utilization is not None:
                    gpu[n].append(row.gpu_utilization)
        # Each sample stands for SAMPLE_INTERVAL of its container: their sum over the bucket's
        # width is what the containers held together on average.
        return {
            "cpu_usage_avg": [sum(v) * SAMPLE_INTERVAL / span.width if v else None for v in cores],
            "container_cpu_usage_max": [max(v, default=None) for v in cores],
            "memory_usage_avg": [sum(v) * SAMPLE_INTERVAL / span.width if v else None for v in memory],
            "container_memory_usage_max": [max(v, default=None) for v in memory],
            "gpu_utilization_avg": [sum(v) / len(v) if v else None for v in gpu],
            "gpu_utilization_max": [max(v, default=None) for v in gpu],
        }
