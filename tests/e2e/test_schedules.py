"""Schedules end to end: a deployed app's Period fires until the app stops; an ephemeral run
fires none; a schedule that names no time is refused."""

import time

WAIT = 90.0  # seconds a deployed schedule gets to fire three times (every 2 s)


def ticks(shoal) -> int:
    return int(shoal.python("scheduled.py", "count").stdout.strip().splitlines()[-1])


def test_a_deployed_period_fires_until_the_app_stops(shoal):
    # An ephemeral run fires no schedule (on Modal neither): the function runs once, when called.
    assert "tick" in shoal.modal("run", "scheduled.py::tick").stdout
    assert ticks(shoal) == 1
    shoal.modal("deploy", "scheduled.py")
    deadline = time.monotonic() + WAIT
    while ticks(shoal) < 4 and time.monotonic() < deadline:
        time.sleep(1)
    assert ticks(shoal) >= 4
    assert "tick" in shoal.modal("app", "logs", "e2e-scheduled").stdout
    shoal.modal("app", "stop", "--yes", "e2e-scheduled")
    time.sleep(1)  # a run the stop killed has no more to write
    stopped = ticks(shoal)
    time.sleep(5)  # two periods and more
    assert ticks(shoal) == stopped


def test_a_schedule_that_names_no_time_is_refused(shoal):
    proc = shoal.modal("deploy", "bad_schedule.py", check=False)
    assert proc.returncode != 0
    assert "The cron string '0 0 30 2 *' names no time" in proc.stdout + proc.stderr
