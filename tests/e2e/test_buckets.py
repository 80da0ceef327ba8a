"""CloudBucketMount: an S3-compatible bucket (moto's server here) mounted into a function's
container, read and written there, a key prefix and read-only honoured, a bad one refused."""

import ast
import subprocess
import time

import boto3
import pytest
from conftest import APPS, VENV_BIN, free_ports


@pytest.fixture(scope="module")
def s3():
    port = free_ports()
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="shoal",
        aws_secret_access_key="shoal-secret",
        region_name="us-east-1",
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="data")
            break
        except Exception:
            assert time.monotonic() < deadline and server.poll() is None, "moto's S3 server did not start"
            time.sleep(0.2)
    client.put_object(Bucket="data", Key="models/weights.txt", Body=b"0.5 0.25\n")
    yield endpoint, client
    server.terminate()
    server.wait(10)


def test_a_bucket_is_mounted_read_and_written(shoal, s3):
    endpoint, client = s3
    proc = subprocess.run(
        [str(VENV_BIN / "modal"), "run", "buckets.py"],
        env={**shoal.client_env(), "BUCKET_ENDPOINT": endpoint},
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    used = ast.literal_eval(lines["used"])
    assert used["weights"] == "0.5 0.25\n"
    assert used["listed"] == ["models", "out"]
    assert used["prefixed"] == ["weights.txt"]  # the prefix is the mount's root
    assert used["read_only"] in ("OSError", "PermissionError")
    assert ast.literal_eval(lines["options"]) == ["weights.txt"]  # with_options(volumes=) replaces the mount
    written = client.get_object(Bucket="data", Key="out/result.txt")["Body"].read()
    assert written == b"written in a container\n"
    assert "Could not mount bucket 'no-such-bucket'" in lines["missing"]
    assert ast.literal_eval(lines["sandbox"]) == "0.5 0.25\n"  # a sandbox mounts one too
