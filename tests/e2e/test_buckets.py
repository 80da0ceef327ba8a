"""CloudBucketMount: an S3-compatible bucket (moto's server here) mounted into a function's
container, read and written there, a key prefix and read-only honoured, a bad one refused."""

import ast
import subprocess

import pytest
from conftest import APPS, VENV_BIN
from s3_server import s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server() as (endpoint, client):
        client.put_object(Bucket="data", Key="models/weights.txt", Body=b"0.5 0.25\n")
        yield endpoint, client


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
