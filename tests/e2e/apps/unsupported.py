"""A function using what shoal lacks (@clustered): refused when created, not run without it."""

import modal
import modal.experimental

app = modal.App("e2e-unsupported")


@app.function()
@modal.experimental.clustered(size=2)
def together() -> None:
    pass
