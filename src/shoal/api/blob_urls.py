"""Signed URLs for the blob endpoint: only holders of a URL shoal issued can use it."""

import hashlib
import hmac


class BlobUrls:
    def __init__(self, base_url: str, secret: bytes):
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def sign(self, verb: str, blob_id: str) -> str:
        return hmac.new(self.secret, f"{verb}:{blob_id}".encode(), hashlib.sha256).hexdigest()

    def upload(self, blob_id: str) -> str:
        return f"{self.base_url}/blobs/{blob_id}?sig={self.sign('put', blob_id)}"

    def download(self, blob_id: str) -> str:
        return f"{self.base_url}/blobs/{blob_id}?sig={self.sign('get', blob_id)}"

    def verify(self, verb: str, blob_id: str, sig: str) -> bool:
        return hmac.compare_digest(self.sign(verb, blob_id), sig)
