"""A scheduled function: shoal has no cron yet, so deploying it must fail saying so; `modal run` calls it."""

import modal

app = modal.App("e2e-scheduled")


@app.function(schedule=modal.Period(minutes=5))
def tick() -> None:
    print("tick")
