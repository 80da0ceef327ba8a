"""Function and class definitions as the client declared them.

A function id is what clients call, and it stays the same across deploys of
its app. What its containers run is a revision: one immutable definition,
identified by its content. A deploy makes new revisions; the app's version
says which revision of each function new calls run.
"""

import time
from dataclasses import dataclass

from modal_proto import api_pb2
from sqlalchemy import and_, insert, or_, select, update

from ..store import schema as t
from ..store.database import Database
from . import schedules
from .errors import InvalidArgument, NotFound
from .ids import content_id, new_id


@dataclass(frozen=True)
class Revision:
    revision_id: str
    function_id: str
    app_id: str
    definition: api_pb2.Function
    params: bytes = b""  # a class's constructor parameters, bound
    # gpu= as a list: every choice, in order of preference ("H100:2", "A100-80GB:1", ...)
    gpu_choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binding:
    """A class's service function with its constructor parameters bound, and the options
    `Cls.with_options()` (or `with_concurrency`, `with_batching`) gave it."""

    parent_id: str
    params: bytes
    options: bytes = b""  # api_pb2.FunctionOptions
    version: int = 0  # the version of its app it is pinned to (`from_name(version=)`); 0 for the live one


class Functions:
    def __init__(self, db: Database):
        self.db = db
        self._revisions: dict[str, Revision] = {}
        self._latest: dict[str, str] = {}  # function id -> revision id
        self._app_of: dict[str, str] = {}
        self._bindings: dict[str, Binding] = {}  # bound function id -> binding
        self._bound: dict[Binding, str] = {}

    async def precreate(self, app_id: str, tag: str, existing_id: str = "") -> str:
        if existing_id:
            await self.app_of(existing_id)
            return existing_id
        function_id = new_id("fu")
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.functions).values(function_id=function_id, app_id=app_id, tag=tag, created_at=time.time())
            )
        self._app_of[function_id] = app_id
        return function_id

    async def create(
        self, app_id: str, definition: api_pb2.Function, existing_id: str = "", gpu_choices: tuple[str, ...] = ()
    ) -> Revision:
        """A new revision of the function; it runs once an app version points at it."""
        refuse_unsupported(definition)
        if definition.HasField("schedule"):
            schedules.check(definition.schedule)
        function_id = existing_id or await self.precreate(app_id, definition.function_name)
        if await self.app_of(function_id) != app_id:
            raise NotFound(f"Function {function_id} does not belong to app {app_id}")
        revision = await self._store_revision(function_id, app_id, definition, b"", gpu_choices)
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.functions)
                .where(t.functions.c.function_id == function_id)
                .values(latest_revision=revision.revision_id)
            )
        self._latest[function_id] = revision.revision_id
        return revision

    async def _store_revision(
        self, function_id: str, app_id: str, definition: api_pb2.Function, params: bytes, gpu_choices: tuple[str, ...]
    ) -> Revision:
        body = definition.SerializeToString(deterministic=True)
        choices = ",".join(gpu_choices)
        content = (function_id.encode(), _canonical(definition), params, choices.encode())
        revision_id = content_id("rv", b"\0".join(content))
        revision = self._revisions.get(revision_id)
        if revision is None:
            revision = Revision(revision_id, function_id, app_id, definition, params, gpu_choices)
            async with self.db.tx() as conn:
                exists = (
                    await conn.execute(
                        select(t.revisions.c.revision_id).where(t.revisions.c.revision_id == revision_id)
                    )
                ).first()
                if not exists:
                    await conn.execute(
                        insert(t.revisions).values(
                            revision_id=revision_id,
                            function_id=function_id,
                            app_id=app_id,
                            definition=body,
                            bound_params=params or None,
                            gpu_choices=choices,
                            created_at=time.time(),
                        )
                    )
            self._revisions[revision_id] = revision
        return revision

    async def revision(self, revision_id: str) -> Revision:
        revision = self._revisions.get(revision_id)
        if revision is None:
            async with self.db.tx() as conn:
                row = (
                    await conn.execute(select(t.revisions).where(t.revisions.c.revision_id == revision_id))
                ).one_or_none()
            if row is None:
                raise NotFound(f"Function revision {revision_id} not found")
            revision = Revision(
                revision_id,
                row.function_id,
                row.app_id,
                api_pb2.Function.FromString(row.definition),
                row.bound_params or b"",
                tuple(filter(None, (row.gpu_choices or "").split(","))),
            )
            self._revisions[revision_id] = revision
        return revision

    def cached(self, revision_id: str) -> Revision | None:
        return self._revisions.get(revision_id)

    async def latest(self, function_id: str) -> Revision:
        """The revision FunctionCreate made last: what a function runs before any version pins one."""
        if function_id not in self._latest:
            await self._load(function_id)
        revision_id = self._latest.get(function_id)
        if not revision_id:
            raise NotFound(f"Function {function_id} has no definition yet")
        return await self.revision(revision_id)

    async def binding(self, function_id: str) -> Binding | None:
        if function_id not in self._app_of:
            await self._load(function_id)
        return self._bindings.get(function_id)

    async def app_of(self, function_id: str) -> str:
        if function_id not in self._app_of:
            await self._load(function_id)
        return self._app_of[function_id]

    async def _load(self, function_id: str) -> None:
        async with self.db.tx() as conn:
            row = (
                await conn.execute(select(t.functions).where(t.functions.c.function_id == function_id))
            ).one_or_none()
        if row is None:
            raise NotFound(f"Function {function_id} not found")
        self._app_of[function_id] = row.app_id
        if row.latest_revision:
            self._latest[function_id] = row.latest_revision
        if row.parent_id:
            binding = Binding(row.parent_id, row.bound_params or b"", row.bound_options or b"", row.pinned_version or 0)
            self._bindings[function_id] = binding
            self._bound[binding] = function_id

    async def bind(
        self, function_id: str, params: bytes, options: api_pb2.FunctionOptions | None = None, version: int = 0
    ) -> str:
        """The id of a class bound to constructor parameters and options, or of a function pinned to a
        version of its app: the same id for the same ones."""
        key = Binding(function_id, params, options.SerializeToString(deterministic=True) if options else b"", version)
        if key in self._bound:
            return self._bound[key]
        app_id = await self.app_of(function_id)
        c = t.functions.c
        same_options = c.bound_options == key.options if key.options else c.bound_options.is_(None)
        same_version = c.pinned_version == version if version else c.pinned_version.is_(None)
        async with self.db.tx() as conn:
            row = (
                await conn.execute(
                    select(c.function_id).where(
                        c.parent_id == function_id, c.bound_params == params, same_options, same_version
                    )
                )
            ).first()
            if row:
                bound_id = row.function_id
            else:
                bound_id = new_id("fu")
                await conn.execute(
                    insert(t.functions).values(
                        function_id=bound_id,
                        app_id=app_id,
                        tag="",
                        parent_id=function_id,
                        bound_params=params,
                        bound_options=key.options or None,
                        pinned_version=version or None,
                        created_at=time.time(),
                    )
                )
        self._app_of[bound_id] = app_id
        self._bindings[bound_id] = key
        self._bound[key] = bound_id
        return bound_id

    async def variants(
        self, function_id: str, limit: int, before: tuple[float, str] | None = None
    ) -> list[tuple[str, Binding, float]]:
        """The variants bound from a function (its parameters and options; not its pinned versions),
        newest first: (id, binding, created_at), at most `limit`, those made before `before`
        (created_at, id) if given."""
        c = t.functions.c
        query = select(c.function_id, c.bound_params, c.bound_options, c.created_at).where(
            c.parent_id == function_id, c.pinned_version.is_(None)
        )
        if before:
            at, last_id = before
            query = query.where(or_(c.created_at < at, and_(c.created_at == at, c.function_id < last_id)))
        async with self.db.tx() as conn:
            rows = await conn.execute(query.order_by(c.created_at.desc(), c.function_id.desc()).limit(limit))
            return [
                (r.function_id, Binding(function_id, r.bound_params or b"", r.bound_options or b""), r.created_at)
                for r in rows
            ]

    async def bound_revision(self, bound_id: str, parent: Revision) -> Revision:
        """What a bound class runs: its parent's revision with the parameters and options added."""
        binding = await self.binding(bound_id)
        assert binding is not None
        definition, gpu_choices = parent.definition, parent.gpu_choices
        if binding.options:
            options = api_pb2.FunctionOptions.FromString(binding.options)
            definition = with_options(definition, options)
            if options.resources.HasField("gpu_config"):
                gpu_choices = ()  # the option's GPU replaces the class's, fallbacks included
        return await self._store_revision(bound_id, parent.app_id, definition, binding.params, gpu_choices)

    async def create_class(self, app_id: str, tag: str, existing_id: str = "") -> str:
        if existing_id:
            return existing_id
        class_id = new_id("cs")
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.classes).values(class_id=class_id, app_id=app_id, tag=tag, created_at=time.time())
            )
        return class_id


def refuse_unsupported(definition: api_pb2.Function) -> None:
    """Refuse what shoal cannot do yet, rather than accept a function that would silently lack it."""
    if any(m.oidc_auth_role_arn for m in definition.cloud_bucket_mounts):
        raise InvalidArgument(
            f"'{definition.function_name}' uses what shoal does not support yet: "
            "a CloudBucketMount with oidc_auth_role_arn (give it a secret with keys instead)"
        )
    if definition._experimental_group_size and definition.webhook_config.type:
        raise InvalidArgument(
            f"'{definition.function_name}' is clustered and a web endpoint: as in Modal, clustered web "
            "endpoints are not supported"
        )
    if definition.is_server and (why := _unsupported_server(definition)):
        raise InvalidArgument(f"Server '{definition.function_name}' uses what shoal does not support yet: {why}")


def _unsupported_server(definition: api_pb2.Function) -> str:
    if definition.http_config.HasField("lift_and_shift_config"):
        return "a server its image's own command starts (give it a class whose @modal.enter starts it)"
    if definition._experimental_group_size:
        return "a clustered server"
    if definition.is_sessioned:
        return "sessions"
    return ""


def with_options(definition: api_pb2.Function, options: api_pb2.FunctionOptions) -> api_pb2.Function:
    """A definition with the options of `with_options()` (on a Function or Cls) and its kin over it: each
    option given replaces the declared one (resources field by field, as the client merges them)."""
    fdef = api_pb2.Function()
    fdef.CopyFrom(definition)
    if options.HasField("resources"):
        fdef.resources.MergeFrom(options.resources)
    if options.replace_secret_ids:
        fdef.ClearField("secret_ids")
        fdef.secret_ids.extend(options.secret_ids)
    if options.replace_volume_mounts:
        fdef.ClearField("volume_mounts")
        fdef.volume_mounts.extend(options.volume_mounts)
    if options.replace_cloud_bucket_mounts:
        fdef.ClearField("cloud_bucket_mounts")
        fdef.cloud_bucket_mounts.extend(options.cloud_bucket_mounts)
    if options.HasField("retry_policy"):
        fdef.retry_policy.CopyFrom(options.retry_policy)
    for option, field in _SAME_NAMED:
        if options.HasField(option):
            setattr(fdef, field, getattr(options, option))
    # The autoscaler's knobs: the declared autoscaler settings take precedence over the
    # fields above (see scheduler.autoscaling), so an option replaces those too.
    for option, setting in _AUTOSCALER:
        if options.HasField(option):
            setattr(fdef.autoscaler_settings, setting, getattr(options, option))
    return fdef


_SAME_NAMED = (
    ("timeout_secs", "timeout_secs"),
    ("concurrency_limit", "concurrency_limit"),
    ("task_idle_timeout_secs", "task_idle_timeout_secs"),
    ("warm_pool_size", "warm_pool_size"),
    ("buffer_containers", "_experimental_buffer_containers"),
    ("max_concurrent_inputs", "max_concurrent_inputs"),
    ("target_concurrent_inputs", "target_concurrent_inputs"),
    ("batch_max_size", "batch_max_size"),
    ("batch_linger_ms", "batch_linger_ms"),
)
_AUTOSCALER = (
    ("concurrency_limit", "max_containers"),
    ("task_idle_timeout_secs", "scaledown_window"),
    ("warm_pool_size", "min_containers"),
    ("buffer_containers", "buffer_containers"),
)


def _canonical(definition: api_pb2.Function) -> bytes:
    """The definition with the lists the client fills concurrently in a fixed order,
    so the same code deployed twice is the same revision."""
    canonical = api_pb2.Function()
    canonical.CopyFrom(definition)
    canonical.ClearField("mount_ids")
    canonical.mount_ids.extend(sorted(definition.mount_ids))
    canonical.ClearField("object_dependencies")
    canonical.object_dependencies.extend(sorted(definition.object_dependencies, key=lambda d: d.object_id))
    return canonical.SerializeToString(deterministic=True)


def retry_policy(revision: Revision | None) -> api_pb2.FunctionRetryPolicy:
    if revision is None or not revision.definition.HasField("retry_policy"):
        return api_pb2.FunctionRetryPolicy()
    return revision.definition.retry_policy
