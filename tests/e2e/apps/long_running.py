"""An app that keeps running until stopped, for `modal app list/logs/stop`."""

import time

import modal

app = modal.App("e2e-long-running")


@app.function(image=modal.Image.debian_slim(), timeout=600)
def ticker():
    for i in range(600):
        print(f"tick {i}", flush=True)
        time.sleep(1)


@app.local_entrypoint()
def main():
    ticker.remote()
