"""Web endpoints (fastapi_endpoint, asgi_app, wsgi_app, web_server): the host each is served at.

As in Modal, each endpoint is the root of a host of its own, `{label}.{domain}`, and the label
is named as Modal names it: `{workspace}--{app}-{function}` (a class's method: `{app}-{Cls}-{method}`),
or `{workspace}--{label}` for a `label=` given; `-{env}` after the workspace outside the default
environment; `-dev` (or the client's dev suffix) at the end for an app that is not deployed.

A label belongs to one function at a time. A deployed app's labels are its own: another app
claiming one is refused. Any other holder's label goes to the newest claim ("label stolen"), so
`modal serve` run again takes over its URL.
"""

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from modal_proto import api_pb2
from sqlalchemy import delete, insert, select

from ..store import schema as t
from ..store.database import Database
from .apps import DEFAULT_ENVIRONMENT, STOPPED_STATES, WORKSPACE_NAME, App, Apps
from .errors import AlreadyExists, NotFound

LABEL_LIMIT = 63  # a DNS label's longest
_NOT_IN_LABEL = re.compile(r"[^a-z0-9-]+")
SERVER_CONFIG = api_pb2.WebhookConfig(type=api_pb2.WEBHOOK_TYPE_WEB_SERVER)
_UNDEPLOYED = (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_DETACHED, api_pb2.APP_STATE_DETACHED_DISCONNECTED)


@dataclass(frozen=True)
class Endpoint:
    label: str
    function_id: str
    method_name: str  # "" for a function, the method for a class's endpoint
    app_id: str


def label_for(environment: str, app_name: str, function_name: str, config: api_pb2.WebhookConfig, deployed: bool):
    """The label an endpoint is served at, and whether it had to be shortened to fit a DNS label."""
    workspace = WORKSPACE_NAME if environment == DEFAULT_ENVIRONMENT else f"{WORKSPACE_NAME}-{environment}"
    label = _dns(f"{workspace}--{config.requested_suffix or f'{app_name}-{function_name}'}")
    suffix = "" if deployed else "-" + _dns(config.ephemeral_suffix or "dev")
    if len(label) + len(suffix) <= LABEL_LIMIT:
        return label + suffix, False
    digest = hashlib.sha256(label.encode()).hexdigest()[:6]
    return f"{label[: LABEL_LIMIT - len(suffix) - 7]}-{digest}{suffix}", True


def _dns(text: str) -> str:
    return _NOT_IN_LABEL.sub("-", text.lower()).strip("-")


def label_of(url: str) -> str:
    """The label in an endpoint's URL (http://LABEL.domain:port)."""
    return url.split("://", 1)[-1].split(".", 1)[0]


def endpoints_of(definition: api_pb2.Function) -> Iterator[tuple[str, api_pb2.WebhookConfig, str]]:
    """(method name, config, URL) of each endpoint a definition has: its own, or its class's methods'.
    A server (`@app.server`) is one endpoint, named as a function's."""
    if definition.is_server:
        yield "", SERVER_CONFIG, definition.web_url
    elif definition.webhook_config.type:
        yield "", definition.webhook_config, definition.web_url
    for name, method in sorted(definition.method_definitions.items()):
        if method.webhook_config.type:
            yield name, method.webhook_config, method.web_url


class WebEndpoints:
    def __init__(self, db: Database, apps: Apps, url_of: Callable[[str], str]):
        self.db = db
        self.apps = apps
        self.url_of = url_of  # label -> the URL clients reach it at

    async def with_urls(self, app_id: str, definition: api_pb2.Function) -> api_pb2.Function:
        """The definition with each of its endpoints' URL filled in (as the client shows them); a
        label a deployed app holds is refused."""
        if not any(endpoints_of(definition)):
            return definition
        app = await self.apps.get(app_id)
        named = api_pb2.Function()
        named.CopyFrom(definition)
        deployed = app.state not in _UNDEPLOYED
        for method_name, config, _ in list(endpoints_of(named)):
            target = named.method_definitions[method_name] if method_name else named
            label, truncated = label_for(
                app.environment, app.name or app.description, target.function_name, config, deployed
            )
            other = await self._other_holder(label, app.app_id)
            if other and other.state == api_pb2.APP_STATE_DEPLOYED:
                raise AlreadyExists(
                    f"The web endpoint label '{label}' belongs to the deployed app '{other.name}'"
                    f" ({other.app_id}): give '{target.function_name}' another label= or stop that app"
                )
            target.web_url = self.url_of(label)
            target.web_url_info.CopyFrom(
                api_pb2.WebUrlInfo(
                    truncated=truncated,
                    has_unique_hash=truncated,
                    label_stolen=bool(other and other.state not in STOPPED_STATES),
                )
            )
        return named

    async def _other_holder(self, label: str, app_id: str) -> App | None:
        """The app other than `app_id` that holds the label, if one does."""
        try:
            holder = (await self.find(label)).app_id
        except NotFound:
            return None
        return await self.apps.get(holder) if holder != app_id else None

    async def claim(self, function_id: str, app_id: str, definition: api_pb2.Function) -> None:
        """The labels in a definition `with_urls` named route to `function_id` from now on."""
        now = time.time()
        rows = [
            dict(label=label_of(url), function_id=function_id, method_name=method, app_id=app_id, created_at=now)
            for method, _, url in endpoints_of(definition)
            if url
        ]
        if not rows:
            return
        async with self.db.tx() as conn:
            await conn.execute(delete(t.web_endpoints).where(t.web_endpoints.c.label.in_([r["label"] for r in rows])))
            await conn.execute(insert(t.web_endpoints), rows)

    async def find(self, label: str) -> Endpoint:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.web_endpoints).where(t.web_endpoints.c.label == label))).first()
        if row is None:
            raise NotFound(f"No web endpoint is served at '{label}'")
        return Endpoint(row.label, row.function_id, row.method_name, row.app_id)
