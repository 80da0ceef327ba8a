"""Deployment webhooks: every live-version switch is POSTed to the configured URLs.

Delivery is in the background and retried, so a slow or failing receiver
never holds up a deploy; the version history in the store is the record.
"""

import asyncio
import logging
import time
from urllib.parse import urlparse

import aiohttp
from sqlalchemy import delete, insert, select

from ..store import schema as t
from ..store.database import Database
from .errors import AlreadyExists, InvalidArgument, NotFound

log = logging.getLogger(__name__)

ATTEMPTS = 5
TIMEOUT = aiohttp.ClientTimeout(total=10)


class Webhooks:
    def __init__(self, db: Database):
        self.db = db
        self._deliveries: set[asyncio.Task] = set()

    async def add(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidArgument(f"A webhook needs an http:// or https:// URL, not {url!r}")
        async with self.db.tx() as conn:
            if (await conn.execute(select(t.webhooks).where(t.webhooks.c.url == url))).first():
                raise AlreadyExists(f"Webhook {url} is already configured")
            await conn.execute(insert(t.webhooks).values(url=url, created_at=time.time()))

    async def remove(self, url: str) -> None:
        async with self.db.tx() as conn:
            if not (await conn.execute(delete(t.webhooks).where(t.webhooks.c.url == url))).rowcount:
                raise NotFound(f"No webhook {url} is configured")

    async def urls(self) -> list[str]:
        async with self.db.tx() as conn:
            return [r.url for r in await conn.execute(select(t.webhooks).order_by(t.webhooks.c.created_at))]

    async def notify(self, event: dict) -> None:
        for url in await self.urls():
            delivery = asyncio.create_task(self._deliver(url, event))
            self._deliveries.add(delivery)
            delivery.add_done_callback(self._deliveries.discard)

    async def _deliver(self, url: str, event: dict) -> None:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            for attempt in range(ATTEMPTS):
                try:
                    async with session.post(url, json=event) as response:
                        if response.status < 300:
                            return
                        problem = f"HTTP {response.status}"
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    problem = f"{type(e).__name__}: {e}"
                log.warning("webhook %s failed (attempt %d of %d): %s", url, attempt + 1, ATTEMPTS, problem)
                await asyncio.sleep(2**attempt)

    async def close(self) -> None:
        for delivery in list(self._deliveries):
            delivery.cancel()
