"""CloudBucketMount against an S3-compatible server (the test's), its endpoint in BUCKET_ENDPOINT."""

import os

import modal

app = modal.App("e2e-buckets")
ENDPOINT = os.environ.get("BUCKET_ENDPOINT", "http://127.0.0.1:9")  # read where the app is defined
KEYS = modal.Secret.from_dict({"AWS_ACCESS_KEY_ID": "shoal", "AWS_SECRET_ACCESS_KEY": "shoal-secret"})


def bucket(name: str = "data", **options) -> modal.CloudBucketMount:
    return modal.CloudBucketMount(name, bucket_endpoint_url=ENDPOINT, force_path_style=True, secret=KEYS, **options)


@app.function(volumes={"/data": bucket(), "/models": bucket(key_prefix="models/", read_only=True)})
def use_buckets() -> dict:
    with open("/data/models/weights.txt") as f:
        weights = f.read()
    os.makedirs("/data/out", exist_ok=True)
    with open("/data/out/result.txt", "w") as f:
        f.write("written in a container\n")
    try:
        open("/models/nope.txt", "w").close()
        read_only = "writable"
    except OSError as e:
        read_only = type(e).__name__
    return {
        "weights": weights,
        "listed": sorted(os.listdir("/data")),
        "prefixed": os.listdir("/models"),
        "read_only": read_only,
    }


@app.function(volumes={"/data": bucket()})
def listing() -> list[str]:
    return sorted(os.listdir("/data"))


@app.function(volumes={"/missing": bucket("no-such-bucket")})
def missing_bucket() -> None:
    pass


@app.local_entrypoint()
def main():
    print("used:", use_buckets.remote())
    print("options:", listing.with_options(volumes={"/data": bucket(key_prefix="models/")}).remote())
    sandbox = modal.Sandbox.create("cat", "/data/models/weights.txt", app=app, volumes={"/data": bucket()})
    print("sandbox:", repr(sandbox.stdout.read()))
    try:
        missing_bucket.remote()
    except Exception as e:
        print("missing:", f"{type(e).__name__}: {e}".replace("\n", " "))
