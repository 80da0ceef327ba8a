"""Releases: what a deploy or a rollback does to the running platform, and what calls reach.

Deployments records versions and switches the live one; this drives a switch:
the new revisions get warm containers before calls reach them, the replaced
ones drain, webhooks hear of it. It also answers which revision a call starting
now runs and which object a name looks up in the live version.
"""

import asyncio
from collections.abc import Callable, Mapping

from modal_proto import api_pb2
from modal_version import __version__ as CLIENT_VERSION

from .apps import DEFAULT_ENVIRONMENT, STOPPED_STATES, Apps
from .deployments import Deployments, Version
from .errors import FailedPrecondition, NotFound
from .functions import Functions, Revision
from .scheduler import Autoscaling, Scheduler, Task, autoscaling
from .schedules import Schedules
from .webhooks import Webhooks

# A deploy waits this long at most for its new containers before it switches anyway.
PREWARM_TIMEOUT = 20.0


class Releases:
    def __init__(
        self,
        apps: Apps,
        deployments: Deployments,
        functions: Functions,
        scheduler: Scheduler,
        schedules: Schedules,
        webhooks: Webhooks,
        on_deployed: Callable[[str], None],
    ):
        self.apps = apps
        self.deployments = deployments
        self.functions = functions
        self.scheduler = scheduler
        self.schedules = schedules
        self.webhooks = webhooks
        self.on_deployed = on_deployed  # told of an app published as deployed: it outlives its client
        self._background: set[asyncio.Task] = set()

    async def publish(
        self,
        app_id: str,
        name: str,
        state: int,
        objects: dict[str, str],
        deployed_by: str,
        tag: str,
        commit_info: bytes,
        tags: Mapping[str, str] = {},
    ) -> Version | None:
        """Make the functions the client created live; None when nothing changed since the live version."""
        app = await self.apps.publish(app_id, name, state, tags)
        if app.state == api_pb2.APP_STATE_DEPLOYED:
            self.on_deployed(app_id)
        return await self.deployments.publish(app_id, objects, deployed_by, CLIENT_VERSION, tag, commit_info)

    async def rollback(self, app_id: str, version: int, deployed_by: str) -> Version:
        app = await self.apps.get(app_id)
        if app.state != api_pb2.APP_STATE_DEPLOYED:
            raise FailedPrecondition(f"App {app_id} is not deployed")
        return await self.deployments.rollback(app_id, version, deployed_by, CLIENT_VERSION)

    async def rollover(self, app_id: str, deployed_by: str) -> Version:
        """`modal app rollover`: a new version of the same code; the containers running now are
        replaced in the background, each function's fresh ones ready before the old ones drain. (With
        `--strategy recreate` the client stops the old ones itself: those started before the version.)"""
        app = await self.apps.get(app_id)
        if app.state != api_pb2.APP_STATE_DEPLOYED:
            raise FailedPrecondition(f"App {app_id} is not deployed")
        version = await self.deployments.rollover(app_id, deployed_by, CLIENT_VERSION)
        outdated = [
            t for t in self.scheduler.tasks_of_app(app_id) if t.state in ("starting", "running") and not t.sandbox
        ]
        replacing = asyncio.create_task(self._replace(outdated))
        self._background.add(replacing)
        replacing.add_done_callback(self._background.discard)
        return version

    def close(self) -> None:
        for task in self._background:
            task.cancel()

    async def _replace(self, outdated: list[Task]) -> None:
        waits = []
        for revision_id in {t.revision_id for t in outdated}:
            revision = self.scheduler.revisions.get(revision_id)
            if revision is None:
                continue
            old = [t.task_id for t in outdated if t.revision_id == revision_id]
            cap = autoscaling(revision.definition, self.scheduler.overrides.get(revision.function_id)).max_containers
            # At its max_containers a function has no room for both: its old containers go first.
            fresh = min(len(old), cap - len(self.scheduler.live_tasks(revision_id)))
            if fresh > 0:
                waits.append(self.scheduler.prewarm(revision, fresh, PREWARM_TIMEOUT, replacing=old))
        await asyncio.gather(*waits)
        for task in outdated:
            await self.scheduler.drain(task)

    async def prewarm(self, app_id: str, revisions: dict[str, str]) -> None:
        """Rolling switch: a function with warm containers gets as many of its new revision,
        ready, before new calls go to it, so a deploy under load queues nothing."""
        live = await self.deployments.live(app_id)
        if live is None:
            return
        waits = []
        for function_id, revision_id in revisions.items():
            old = live.revisions.get(function_id)
            warm = len(self.scheduler.live_tasks(old)) if old and old != revision_id else 0
            if warm:
                revision = await self.functions.revision(revision_id)
                waits.append(self.scheduler.prewarm(revision, warm, PREWARM_TIMEOUT))
        await asyncio.gather(*waits)

    async def switched(self, version: Version) -> None:
        """A new live version: its functions may start containers, the ones it replaced drain."""
        for function_id in version.revisions:
            self.scheduler.overrides.pop(function_id, None)  # a deploy brings back the declared settings
        await self._schedule_version(version)
        for rid, revision in list(self.scheduler.revisions.items()):
            if revision.app_id == version.app_id and await self._current_revision(revision.function_id) != rid:
                self.scheduler.retire(rid)
        app = await self.apps.get(version.app_id)
        if app.state == api_pb2.APP_STATE_DEPLOYED:
            await self._schedule_runs(version)
            await self.webhooks.notify(
                {
                    "event": "rollback" if version.rollback_version else "deploy",
                    "app_id": app.app_id,
                    "app_name": app.name,
                    "environment": app.environment,
                    "from_version": version.previous_version,
                    "to_version": version.version,
                    "deployed_by": version.deployed_by,
                    "deployed_at": version.deployed_at,
                }
            )

    async def _current_revision(self, function_id: str) -> str | None:
        try:
            return (await self.deployments.resolve(function_id)).revision_id
        except NotFound:
            return None  # the new version dropped the function

    async def update_autoscaler(
        self, function_id: str, settings: api_pb2.AutoscalerSettings, warm_pool_size: int
    ) -> Autoscaling:
        """Function.update_autoscaler(): the given settings replace the declared ones until the next deploy."""
        revision = await self.deployments.resolve(function_id)
        override = self.scheduler.overrides.setdefault(function_id, api_pb2.AutoscalerSettings())
        override.MergeFrom(settings)
        if warm_pool_size:
            override.min_containers = warm_pool_size
        self.scheduler.kick(revision.revision_id)
        return autoscaling(revision.definition, override)

    async def autoscaler(self, function_id: str) -> tuple[Autoscaling, api_pb2.AutoscalerSettings, Autoscaling]:
        """Function.autoscaler.settings(): what the function declared, the run-time overrides, and what applies."""
        revision = await self.deployments.resolve(function_id)
        override = self.scheduler.overrides.get(function_id, api_pb2.AutoscalerSettings())
        return autoscaling(revision.definition), override, autoscaling(revision.definition, override)

    async def recover(self) -> None:
        """After a restart: deployed apps' live versions may start containers again (their warm pools)."""
        for app in await self.apps.in_state(api_pb2.APP_STATE_DEPLOYED):
            live = await self.deployments.live(app.app_id)
            if live:
                await self._schedule_version(live)
                await self._schedule_runs(live)

    async def _schedule_version(self, version: Version) -> None:
        for function_id in version.revisions:
            self.scheduler.add(await self.deployments.resolve(function_id))

    async def _schedule_runs(self, version: Version) -> None:
        """The schedules of a deployed app's live version fire from now on, in place of its last one's."""
        scheduled = {}
        for function_id, revision_id in version.revisions.items():
            definition = (await self.functions.revision(revision_id)).definition
            if definition.HasField("schedule"):
                scheduled[function_id] = definition.schedule
        self.schedules.live(version.app_id, scheduled, version.deployed_at)

    async def deployed_object(self, app_name: str, environment: str, tag: str, kind: str, version: int = 0) -> str:
        """The id under `tag` in the live version of a deployed app, or in its version `version`."""
        environment = environment or DEFAULT_ENVIRONMENT
        app = await self.apps.by_name(environment, app_name)
        live = await self.deployments.live(app.app_id) if app and app.state == api_pb2.APP_STATE_DEPLOYED else None
        if live is None:
            raise NotFound(f"App '{app_name}' is not deployed in environment '{environment}'")
        if version:
            live = await self.deployments.get(app.app_id, version)
        object_id = live.objects.get(tag, "")
        prefix = {"Function": "fu-", "Cls": "cs-"}[kind]  # the names the client's errors use
        if not object_id.startswith(prefix):
            if kind == "Function" and object_id.startswith("cs-"):
                raise NotFound(f"'{tag}' in app '{app_name}' is a class: look it up with modal.Cls.from_name")
            raise NotFound(f"No {kind} named '{tag}' in app '{app_name}' (environment '{environment}')")
        return object_id

    async def call_target(self, function_id: str) -> Revision:
        """The revision a call starting now runs, ready to be scheduled."""
        revision = await self.deployments.resolve(function_id)
        if revision.revision_id not in self.scheduler.revisions:
            if (await self.apps.get(revision.app_id)).state in STOPPED_STATES:
                raise FailedPrecondition(f"App {revision.app_id} is stopped; its functions cannot be called")
            self.scheduler.add(revision)
        return revision
