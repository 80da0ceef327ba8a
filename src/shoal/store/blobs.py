"""Content-addressed blob store on a local directory.

Blobs (large call arguments and results) and mount and volume files share it:
all are named by the sha256 of their bytes, so the same content is stored once.
Large uploads arrive as a stream (`receiving`) or in parts (`part`, `assemble`).
"""

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

CHUNK = 1 << 20

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

    @contextmanager
    def receiving(self, sha256_hex: str) -> Iterator["BlobSink"]:
        """A sink for a blob's bytes as they arrive, kept under its name when they hash to it
        (ValueError when not); nothing is kept if the block raises."""
        target = self.path(sha256_hex)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                sink = BlobSink(f)
                yield sink
            if sink.sha256.hexdigest() != sha256_hex:
                raise ValueError(f"content hash mismatch: expected {sha256_hex}, got {sink.sha256.hexdigest()}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def part(self, sha256_hex: str, number: int) -> BinaryIO:
        """A file to write part `number` (from 1) of a blob uploaded in parts into."""
        directory = self._parts_dir(sha256_hex)
        os.makedirs(directory, exist_ok=True)
        return open(os.path.join(directory, str(number)), "wb")

    def assemble(self, sha256_hex: str, count: int) -> str:
        """The blob from its parts 1..count (FileNotFoundError when one is missing); returns the
        upload's multipart ETag, the md5 of its parts' md5s and their count, as S3 has it."""
        directory = self._parts_dir(sha256_hex)
        part_md5s = b""
        with self.receiving(sha256_hex) as sink:
            for number in range(1, count + 1):
                md5 = hashlib.md5()
                with open(os.path.join(directory, str(number)), "rb") as f:
                    while chunk := f.read(CHUNK):
                        sink.write(chunk)
                        md5.update(chunk)
                part_md5s += md5.digest()
        shutil.rmtree(directory, ignore_errors=True)
        return f"{hashlib.md5(part_md5s).hexdigest()}-{count}"

    def _parts_dir(self, sha256_hex: str) -> str:
        self.path(sha256_hex)  # a digest, not a path
        return os.path.join(self.root, ".parts", sha256_hex)

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


class BlobSink:
    """Where a blob's bytes are written, hashed as they pass."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)
