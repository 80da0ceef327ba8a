"""An app the deployment tests deploy again and again; they rewrite VERSION between deploys."""

import time

import modal

VERSION = "v1"

app = modal.App("e2e-deployed")


@app.function()
def version() -> str:
    print(f"serving {VERSION}")
    return VERSION


@app.function()
def version_by_name() -> str:
    """version() looked up by name from inside a container, in the environment it runs in."""
    import os

    return f"{os.environ['MODAL_ENVIRONMENT']}:{modal.Function.from_name(app.name, 'version').remote()}"


@app.function()
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return VERSION


@app.function(min_containers=1)
def warm() -> str:
    return VERSION


@app.cls()
class Greeter:
    name: str = modal.parameter()

    @modal.method()
    def greet(self) -> str:
        return f"{VERSION}:{self.name}"
