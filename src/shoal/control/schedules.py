"""Schedules: `schedule=modal.Period(...)` and `schedule=modal.Cron(...)` of deployed apps.

As in Modal, only a deployed app's live version fires them (an ephemeral app's
schedule is ignored), a Period counts from the deploy that made the version live,
and each firing is a call of the function with no arguments, run like a spawn.
Times that fall while shoal is down are skipped, not made up for.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil.relativedelta import relativedelta
from modal_proto import api_pb2

from .errors import InvalidArgument

log = logging.getLogger(__name__)

# A schedule may fire at most this often.
SHORTEST_PERIOD = 1.0
# The loop's longest sleep: a schedule added meanwhile waits at most this long to be seen.
TICK = 1.0


def check(schedule: api_pb2.Schedule) -> None:
    """Refuse a schedule that could never fire, or would fire more than once a second."""
    if schedule.HasField("cron"):
        try:
            ZoneInfo(schedule.cron.timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(f"Unknown time zone {schedule.cron.timezone!r} in modal.Cron") from None
        if not croniter.is_valid(schedule.cron.cron_string):
            raise InvalidArgument(f"Invalid cron string {schedule.cron.cron_string!r} in modal.Cron")
        try:
            next_time(schedule, 0.0, time.time())
        except ValueError:  # a date no calendar has, as "0 0 30 2 *"
            raise InvalidArgument(f"The cron string {schedule.cron.cron_string!r} names no time") from None
        return
    p = schedule.period
    if min(p.years, p.months, p.weeks, p.days, p.hours, p.minutes) < 0 or not (p.seconds >= 0):
        raise InvalidArgument("A modal.Period may not be negative")
    try:
        if not (p.years or p.months) and _fixed(p).total_seconds() < SHORTEST_PERIOD:
            raise InvalidArgument(f"A modal.Period must be at least {SHORTEST_PERIOD:g} s: it fires once each period")
        now = time.time()
        next_time(schedule, now, now)
    except (OverflowError, ValueError):
        raise InvalidArgument("A modal.Period this long would never fire") from None


def next_time(schedule: api_pb2.Schedule, anchor: float, after: float) -> float:
    """The first time the schedule fires after `after`; a Period counts from `anchor`."""
    if schedule.HasField("cron"):
        zone = ZoneInfo(schedule.cron.timezone or "UTC")
        start = datetime.fromtimestamp(after, zone)
        return croniter(schedule.cron.cron_string, start).get_next(datetime).timestamp()
    p = schedule.period
    start = datetime.fromtimestamp(anchor, UTC)
    months, fixed = p.years * 12 + p.months, _fixed(p)
    if not months:
        steps = math.floor((after - anchor) / fixed.total_seconds()) + 1 if after >= anchor else 1
    else:  # calendar months vary in length: step from an estimate to the first past `after`
        average = timedelta(days=30.44 * months) + fixed
        steps = max(1, math.floor((after - anchor) / average.total_seconds()) - 1)
    while (at := (start + relativedelta(months=months * steps) + fixed * steps).timestamp()) <= after:
        steps += 1
    return at


def _fixed(p: api_pb2.Schedule.Period) -> timedelta:
    return timedelta(weeks=p.weeks, days=p.days, hours=p.hours, minutes=p.minutes, seconds=p.seconds)


@dataclass
class _Entry:
    app_id: str
    schedule: api_pb2.Schedule
    anchor: float
    next_at: float


class Schedules:
    def __init__(self, fire: Callable[[str], Awaitable[None]]):
        self.fire = fire  # calls the function (by id) with no arguments
        self.entries: dict[str, _Entry] = {}  # function id -> its schedule
        self._loop: asyncio.Task | None = None

    def live(self, app_id: str, scheduled: dict[str, api_pb2.Schedule], deployed_at: float) -> None:
        """A deployed app's live version, with its functions' schedules: they replace the app's."""
        self.forget(app_id)
        now = time.time()
        for function_id, schedule in scheduled.items():
            self.entries[function_id] = _Entry(app_id, schedule, deployed_at, next_time(schedule, deployed_at, now))

    def forget(self, app_id: str) -> None:
        for function_id in [f for f, e in self.entries.items() if e.app_id == app_id]:
            del self.entries[function_id]

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run())

    def close(self) -> None:
        if self._loop:
            self._loop.cancel()

    async def _run(self) -> None:
        while True:
            now = time.time()
            for function_id, entry in list(self.entries.items()):
                if entry.next_at > now:
                    continue
                try:
                    entry.next_at = next_time(entry.schedule, entry.anchor, max(now, entry.next_at))
                    await self.fire(function_id)
                except Exception:
                    log.exception("firing the schedule of %s", function_id)
            soonest = min((e.next_at for e in self.entries.values()), default=now + TICK)
            await asyncio.sleep(min(TICK, max(0.0, soonest - time.time())))
