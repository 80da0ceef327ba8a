"""API tokens: an id and a secret; only the secret's hash is stored."""

import hashlib
import hmac
import secrets
import time

from sqlalchemy import insert, select

from ..store import schema as t
from ..store.database import Database
from .errors import NotFound, Unauthenticated


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    def __init__(self, db: Database):
        self.db = db
        self._valid: dict[str, str] = {}  # token_id -> secret hash, filled on first use

    async def create(self) -> tuple[str, str]:
        token_id = "ak-" + secrets.token_urlsafe(16)
        secret = "as-" + secrets.token_urlsafe(24)
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.tokens).values(token_id=token_id, secret_sha256=_hash(secret), created_at=time.time())
            )
        return token_id, secret

    async def verify(self, token_id: str, secret: str) -> None:
        if not token_id or not secret:
            raise Unauthenticated('Missing token: run `eval "$(shoal env)"` to point the client at shoal')
        expected = self._valid.get(token_id)
        if expected is None:
            async with self.db.tx() as conn:
                row = (await conn.execute(select(t.tokens).where(t.tokens.c.token_id == token_id))).one_or_none()
            if row is None:
                raise Unauthenticated(f"Unknown token id {token_id}: create one with `shoal token new`")
            expected = self._valid[token_id] = row.secret_sha256
        if not hmac.compare_digest(expected, _hash(secret)):
            raise Unauthenticated(f"Wrong secret for token {token_id}")

    async def created_at(self, token_id: str) -> float:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.tokens).where(t.tokens.c.token_id == token_id))).one_or_none()
        if row is None:
            raise NotFound("This request carries no token: it comes from a container" if not token_id else token_id)
        return row.created_at
