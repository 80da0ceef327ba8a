"""Secrets: named or anonymous sets of environment variables.

A named secret (`modal secret create`, `Secret.from_name`) lives in an environment
under its name. An anonymous one (`Secret.from_dict`, an `env=` argument) is
identified by its content, so the same values give the same id, and an image that
uses them keeps its id from one run to the next. Containers and build steps get a
secret's values as environment variables.
"""

import json
import re
import time
from dataclasses import dataclass

from modal_proto import api_pb2
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from ..store import schema as t
from ..store.database import Database
from .apps import DEFAULT_ENVIRONMENT
from .errors import AlreadyExists, InvalidArgument, NotFound
from .ids import content_id, new_id

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
Creation = api_pb2.ObjectCreationType


@dataclass
class Secret:
    secret_id: str
    environment: str
    name: str | None
    env: dict[str, str]
    created_at: float

    def metadata(self) -> api_pb2.SecretMetadata:
        return api_pb2.SecretMetadata(
            name=self.name or "",
            environment_name=self.environment,
            keys=sorted(self.env),
            creation_info=api_pb2.CreationInfo(created_at=self.created_at),
        )


class Secrets:
    def __init__(self, db: Database):
        self.db = db

    async def get_or_create(
        self, name: str, environment: str, creation: int, env: dict[str, str], required_keys: list[str] = ()
    ) -> Secret:
        environment = environment or DEFAULT_ENVIRONMENT
        _check_env(env)
        if not name:
            secret = await self._anonymous(environment, env)
        elif creation == Creation.OBJECT_CREATION_TYPE_UNSPECIFIED:
            secret = await self._named(environment, name)
            if secret is None:
                raise NotFound(f"Secret '{name}' not found in environment '{environment}'")
        elif creation in (
            Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS,
            Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
            Creation.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS,
        ):
            secret = await self._create_named(environment, name, env, creation)
        else:
            raise InvalidArgument(f"Secret '{name}': object creation type {creation} is not supported")
        missing = [key for key in required_keys if key not in secret.env]
        if missing:
            raise NotFound(f"Secret '{secret.name or secret.secret_id}' is missing the keys {', '.join(missing)}")
        return secret

    async def _anonymous(self, environment: str, env: dict[str, str]) -> Secret:
        secret_id = content_id("st", json.dumps([environment, env], sort_keys=True).encode())
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.secrets).where(t.secrets.c.secret_id == secret_id))).one_or_none()
            if row is not None:
                return _secret(row)
            secret = Secret(secret_id, environment, None, dict(env), time.time())
            await conn.execute(insert(t.secrets).values(**_row(secret)))
        return secret

    async def _named(self, environment: str, name: str) -> Secret | None:
        async with self.db.tx() as conn:
            row = (
                await conn.execute(
                    select(t.secrets).where(t.secrets.c.environment == environment, t.secrets.c.name == name)
                )
            ).one_or_none()
        return _secret(row) if row else None

    async def _create_named(self, environment: str, name: str, env: dict[str, str], creation: int) -> Secret:
        existing = await self._named(environment, name)
        if existing is not None:
            if creation == Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
                raise AlreadyExists(f"Secret '{name}' already exists in environment '{environment}'")
            if creation == Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                return existing
            # Overwritten values get a new id: images built with the old values are not reused.
            async with self.db.tx() as conn:
                await conn.execute(delete(t.secrets).where(t.secrets.c.secret_id == existing.secret_id))
        secret = Secret(new_id("st"), environment, name, dict(env), time.time())
        try:
            async with self.db.tx() as conn:
                await conn.execute(insert(t.secrets).values(**_row(secret)))
        except IntegrityError:
            raise AlreadyExists(f"Secret '{name}' already exists in environment '{environment}'") from None
        return secret

    async def get(self, secret_id: str) -> Secret:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.secrets).where(t.secrets.c.secret_id == secret_id))).one_or_none()
        if row is None:
            raise NotFound(f"Secret {secret_id} not found")
        return _secret(row)

    async def in_environment(self, environment: str) -> list[Secret]:
        environment = environment or DEFAULT_ENVIRONMENT
        async with self.db.tx() as conn:
            rows = await conn.execute(
                select(t.secrets)
                .where(t.secrets.c.environment == environment, t.secrets.c.name.is_not(None))
                .order_by(t.secrets.c.created_at.desc())
            )
        return [_secret(row) for row in rows]

    async def delete(self, secret_id: str) -> None:
        async with self.db.tx() as conn:
            deleted = await conn.execute(delete(t.secrets).where(t.secrets.c.secret_id == secret_id))
        if deleted.rowcount == 0:
            raise NotFound(f"Secret {secret_id} not found")

    async def env(self, secret_ids: list[str]) -> dict[str, str]:
        """The variables of these secrets, later ones overriding earlier ones."""
        merged: dict[str, str] = {}
        for secret_id in secret_ids:
            merged.update((await self.get(secret_id)).env)
        return merged

    async def sources_env(self, sources: list[api_pb2.SecretSource]) -> dict[str, str]:
        """The variables of secret sources as the client lists them (a secret by id, or variables
        given inline, such as `env=`), later ones overriding earlier ones."""
        merged: dict[str, str] = {}
        for source in sources:
            merged |= await self.env([source.secret_id]) if source.secret_id else dict(source.env.contents)
        return merged


def _check_env(env: dict[str, str]) -> None:
    bad = [key for key in env if not _ENV_NAME.fullmatch(key)]
    if bad:
        raise InvalidArgument(f"Secret keys must be environment variable names; not: {', '.join(map(repr, bad))}")


def _row(secret: Secret) -> dict:
    return {
        "secret_id": secret.secret_id,
        "environment": secret.environment,
        "name": secret.name,
        "env": json.dumps(secret.env, sort_keys=True),
        "created_at": secret.created_at,
    }


def _secret(row) -> Secret:
    return Secret(row.secret_id, row.environment, row.name, json.loads(row.env), row.created_at)
