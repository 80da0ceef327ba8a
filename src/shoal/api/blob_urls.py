"""Signed URLs for the HTTP side (blobs, volume file blocks): only holders of a URL shoal issued can use it."""

import hashlib
import hmac
from urllib.parse import urlencode


class BlobUrls:
    def __init__(self, base_url: str, secret: bytes):
        self.base_url = base_url.rstrip("/")
        self.secret = secret

    def sign(self, verb: str, blob_id: str) -> str:
        return hmac.new(self.secret, f"{verb}:{blob_id}".encode(), hashlib.sha256).hexdigest()

    def upload(self, blob_id: str) -> str:
        return f"{self.base_url}/blobs/{blob_id}?sig={self.sign('put', blob_id)}"

    def upload_part(self, blob_id: str, number: int) -> str:
        return f"{self.base_url}/blobs/{blob_id}/parts/{number}?sig={self.sign('put-part', f'{blob_id}/{number}')}"

    def complete(self, blob_id: str, parts: int) -> str:
        sig = self.sign("complete", f"{blob_id}/{parts}")
        return f"{self.base_url}/blobs/{blob_id}/complete?parts={parts}&sig={sig}"

    def download(self, blob_id: str) -> str:
        return f"{self.base_url}/blobs/{blob_id}?sig={self.sign('get', blob_id)}"

    def verify(self, verb: str, blob_id: str, sig: str) -> bool:
        return hmac.compare_digest(self.sign(verb, blob_id), sig)

    def volume_block(self, volume_id: str, path: str, start: int, length: int) -> str:
        """Where a client reads `length` bytes from `start` of a volume's file."""
        query = {"path": path, "start": start, "len": length}
        query["sig"] = self.sign("volume", _block_key(volume_id, query))
        return f"{self.base_url}/volumes/{volume_id}/blocks?{urlencode(query)}"

    def verify_volume_block(self, volume_id: str, query) -> bool:
        return self.verify("volume", _block_key(volume_id, query), query.get("sig", ""))


def _block_key(volume_id: str, query) -> str:
    return "\0".join((volume_id, str(query.get("path", "")), str(query.get("start", "")), str(query.get("len", ""))))
