"""Schedules: when a Period or a Cron fires next, what is refused, and the loop that fires them."""

import asyncio
from datetime import UTC, datetime

import pytest
from modal_proto import api_pb2

from shoal.control.errors import InvalidArgument
from shoal.control.schedules import Schedules, check, next_time

S = api_pb2.Schedule


def at(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_a_period_counts_from_its_anchor_and_skips_what_has_passed():
    every = S(period=S.Period(seconds=2.5))
    assert next_time(every, 100.0, 100.0) == 102.5
    assert next_time(every, 100.0, 104.9) == 105.0
    assert next_time(every, 100.0, 50.0) == 102.5
    assert next_time(every, 100.0, 1_000_000.0) == 1_000_002.5  # times while down are not made up for


def test_a_period_of_months_follows_the_calendar():
    monthly = S(period=S.Period(months=1))
    anchor = at(2026, 1, 31)
    assert next_time(monthly, anchor, anchor) == at(2026, 2, 28)
    assert next_time(monthly, anchor, at(2026, 3, 1)) == at(2026, 3, 31)
    assert next_time(S(period=S.Period(years=1, days=1)), anchor, anchor) == at(2027, 2, 1)


def test_a_cron_fires_at_its_next_time_in_its_time_zone():
    daily_six = S(cron=S.Cron(cron_string="0 6 * * *", timezone="America/New_York"))
    assert next_time(daily_six, 0.0, at(2026, 12, 2, 12)) == at(2026, 12, 3, 11)  # 6:00 EST
    assert next_time(daily_six, 0.0, at(2026, 7, 2, 12)) == at(2026, 7, 3, 10)  # 6:00 EDT
    every_five = S(cron=S.Cron(cron_string="*/5 * * * *"))
    assert next_time(every_five, 0.0, at(2026, 12, 2, 12, 3)) == at(2026, 12, 2, 12, 5)


@pytest.mark.parametrize(
    "schedule, message",
    [
        (S(cron=S.Cron(cron_string="nope")), "Invalid cron string 'nope'"),
        (S(cron=S.Cron(cron_string="0 0 30 2 *")), "names no time"),
        (S(cron=S.Cron(cron_string="* * * * *", timezone="Mars/Base")), "Unknown time zone 'Mars/Base'"),
        (S(period=S.Period()), "at least 1 s"),
        (S(period=S.Period(seconds=0.5)), "at least 1 s"),
        (S(period=S.Period(minutes=-1)), "may not be negative"),
        (S(period=S.Period(seconds=float("nan"))), "may not be negative"),
        (S(period=S.Period(seconds=float("inf"))), "would never fire"),
        (S(period=S.Period(years=2**31 - 1)), "would never fire"),
    ],
)
def test_schedules_that_cannot_fire_are_refused(schedule, message):
    with pytest.raises(InvalidArgument, match=message):
        check(schedule)


async def test_the_loop_fires_what_is_due_and_forgets_stopped_apps():
    fired = []

    async def fire(function_id: str) -> None:
        fired.append(function_id)
        if function_id == "fu-broken":
            raise RuntimeError("the function is gone")

    schedules = Schedules(fire)
    every = S(period=S.Period(seconds=3600))
    schedules.live("ap-1", {"fu-a": every, "fu-broken": every}, deployed_at=0.0)
    schedules.live("ap-2", {"fu-b": every}, deployed_at=0.0)
    schedules.entries["fu-a"].next_at = schedules.entries["fu-broken"].next_at = 0.0  # due now
    schedules.forget("ap-2")
    schedules.start()
    try:
        for _ in range(100):
            if len(fired) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        schedules.close()
    assert sorted(fired) == ["fu-a", "fu-broken"]  # one failing run does not stop the others
    assert schedules.entries["fu-a"].next_at > 0.0 and "fu-b" not in schedules.entries
    schedules.live("ap-1", {}, deployed_at=0.0)  # a version without schedules replaces them
    assert schedules.entries == {}
