"""Another app whose function calls the deployed one by name, from inside its container."""

import modal

app = modal.App("e2e-other-app")


@app.function()
def ask() -> str:
    deployed = modal.Function.from_name("e2e-deployed", "version").hydrate()
    return f"deployed says {deployed.remote()}"


@app.local_entrypoint()
def main():
    print(ask.remote())
