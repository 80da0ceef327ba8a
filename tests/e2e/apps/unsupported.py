"""A function using what shoal lacks (a bucket reached with an AWS role): refused when created, not run without it."""

import modal

app = modal.App("e2e-unsupported")


@app.function(volumes={"/bucket": modal.CloudBucketMount("my-bucket", oidc_auth_role_arn="arn:aws:iam::1:role/r")})
def with_bucket() -> None:
    pass
