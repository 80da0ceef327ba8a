"""A cron schedule no clock ever shows (February has no 30th): refused when the app is run or deployed."""

import modal

app = modal.App("e2e-bad-schedule")


@app.function(schedule=modal.Cron("0 0 30 2 *"))
def never() -> None:
    pass
