"""A throw-away S3-compatible server (moto's) with one bucket, `data`, for bucket mount tests."""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
from registry_fixture import free_port

ACCESS_KEY, SECRET_KEY = "shoal", "shoal-secret"


@contextmanager
def s3_server() -> Iterator[tuple[str, object]]:
    """Its endpoint URL, and a boto3 client of it."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="data")
                break
            except Exception:
                assert time.monotonic() < deadline and server.poll() is None, "moto's S3 server did not start"
                time.sleep(0.2)
        yield endpoint, client
    finally:
        server.terminate()
        server.wait(10)
