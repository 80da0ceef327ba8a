"""A function using what shoal lacks (CloudBucketMount): refused when created, not run without it."""

import modal

app = modal.App("e2e-unsupported")


@app.function(volumes={"/bucket": modal.CloudBucketMount("my-bucket")})
def with_bucket() -> None:
    pass
