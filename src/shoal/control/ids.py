"""Object identifiers with Modal's prefixes, so the client's display and from_id work."""

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def content_id(prefix: str, data: bytes) -> str:
    """An id derived from content: same bytes, same id."""
    return f"{prefix}-" + hashlib.sha256(data).hexdigest()[:32]
