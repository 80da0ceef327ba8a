"""An image whose build fails: the client must see the command and the log tail."""

import modal

app = modal.App("e2e-failing-build")
image = modal.Image.debian_slim().run_commands("echo about to fail && exit 3")


@app.function(image=image)
def never() -> None:
    pass


@app.local_entrypoint()
def main():
    never.remote()
