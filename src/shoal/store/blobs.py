"""Content-addressed blob store on a local directory.

Blobs (large call arguments and results) and mount files share it: both are
named by the sha256 of their bytes, so the same content is stored once.
"""

import hashlib
import os
import re
import tempfile

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, exist_ok=True)

    def path(self, sha256_hex: str) -> str:
        # Hashes come from clients: anything but a digest could name a file outside the store.
        if not _SHA256_HEX.fullmatch(sha256_hex):
            raise ValueError(f"not a sha256 hex digest: {sha256_hex!r}")
        return os.path.join(self.root, sha256_hex[:2], sha256_hex)

    def has(self, sha256_hex: str) -> bool:
        try:
            return os.path.exists(self.path(sha256_hex))
        except ValueError:  # not a digest: no blob has that name
            return False

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self._write(digest, data)
        return digest

    def put_verified(self, sha256_hex: str, data: bytes) -> None:
        """Store bytes the caller named by hash; refuse a mismatch."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256_hex:
            raise ValueError(f"content hash mismatch: expected {sha256_hex}, got {actual}")
        if not self.has(sha256_hex):
            self._write(sha256_hex, data)

    def get(self, sha256_hex: str) -> bytes:
        with open(self.path(sha256_hex), "rb") as f:
            return f.read()

    def _write(self, digest: str, data: bytes) -> None:
        target = self.path(digest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
