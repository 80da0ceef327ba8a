"""Object identifiers with Modal's prefixes, so the client's display and from_id work."""

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """22 characters from 136 random bits (131 survive), drawn at once: a map makes one per input."""
    n = int.from_bytes(secrets.token_bytes(17))
    chars = []
    for _ in range(22):
        n, digit = divmod(n, 62)
        chars.append(_ALPHABET[digit])
    return f"{prefix}-" + "".join(chars)


def content_id(prefix: str, data: bytes) -> str:
    """An id derived from content: same bytes, same id."""
    return f"{prefix}-" + hashlib.sha256(data).hexdigest()[:32]
