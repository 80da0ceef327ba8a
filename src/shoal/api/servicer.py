"""The Modal gRPC API: translate requests into calls on the platform, and back.

One servicer instance answers the TCP endpoint (clients, token-checked by the
server, and containers on joined workers, whose requests name their task); one
more per container of the embedded worker answers its private unix socket, where
`task_id` says who is calling.
"""

import base64
import bisect
import hashlib
import time

from google.protobuf import empty_pb2
from grpclib import GRPCError, Status
from modal_proto import api_pb2

from ..control import access
from ..control.apps import DEFAULT_ENVIRONMENT, App
from ..control.calls import Call, Input
from ..control.deployments import Version
from ..control.errors import InvalidArgument, NotFound
from ..control.handles import function_data, function_metadata, method_metadata
from ..control.logs import LogEntry
from ..control.platform import Platform
from ..control.pulse import Pulse
from ..control.scheduler import Autoscaling
from .account import AccountRpcs
from .blob_urls import BlobUrls
from .clusters import ClusterRpcs
from .dicts import DictRpcs
from .inspection import InspectionRpcs
from .queues import QueueRpcs
from .rpc import UnimplementedServicer, caller, poll_timeout, router_url, seconds, sending_task, streaming, unary
from .sandboxes import SandboxRpcs
from .tunnels import TunnelRpcs
from .volumes import VolumeRpcs

GenericResult = api_pb2.GenericResult
# Long-polls return before the client's own attempt timeout would fire.
MAX_POLL = 50.0
INPUTS_POLL = 5.0
# The container heartbeats every 15 s; holding the request lets cancellations reach it at once.
HEARTBEAT_HOLD = 13.0
# Blobs larger than the client's own threshold come in parts of at least MULTIPART_PART bytes.
MULTIPART_THRESHOLD = 1024**3
MULTIPART_PART = 256 * 1024**2
MULTIPART_MAX_PARTS = 10_000
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # an empty file's request carries no data to tell it by


class ShoalServicer(
    AccountRpcs,
    InspectionRpcs,
    VolumeRpcs,
    DictRpcs,
    QueueRpcs,
    SandboxRpcs,
    ClusterRpcs,
    TunnelRpcs,
    UnimplementedServicer,
):
    def __init__(self, platform: Platform, blob_urls: BlobUrls, task_id: str = ""):
        self.p = platform
        self.blob_urls = blob_urls
        self.task_id = task_id

    # -- client and environment --------------------------------------------

    @unary
    async def ClientHello(self, req):
        return api_pb2.ClientHelloResponse()

    @unary
    async def EnvironmentGetOrCreate(self, req):
        name = req.deployment_name or DEFAULT_ENVIRONMENT
        if req.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
            if name not in {e.name for e in await self.p.apps.environments()}:
                await self.p.apps.create_environment(name)
        env_id = await self.p.apps.ensure_environment(name)
        return api_pb2.EnvironmentGetOrCreateResponse(
            environment_id=env_id,
            metadata=api_pb2.EnvironmentMetadata(
                name=name,
                settings=api_pb2.EnvironmentSettings(image_builder_version=self.p.images.builder_version),
            ),
        )

    @unary
    async def EnvironmentCreate(self, req):
        await self.p.apps.create_environment(req.name)
        return empty_pb2.Empty()

    @unary
    async def EnvironmentList(self, req):
        return api_pb2.EnvironmentListResponse(
            items=[
                api_pb2.EnvironmentListItem(
                    name=e.name,
                    environment_id=e.environment_id,
                    created_at=e.created_at,
                    default=e.name == DEFAULT_ENVIRONMENT,
                    image_builder_version=self.p.images.builder_version,
                )
                for e in await self.p.apps.environments()
            ]
        )

    @unary
    async def EnvironmentDelete(self, req):
        for app in await self.p.apps.delete_environment(req.name):
            await self.p.stop_app(app.app_id)
        await self.p.delete_environment_objects(req.name)
        return empty_pb2.Empty()

    @unary
    async def EnvironmentUpdate(self, req):
        if req.HasField("name") and req.name.value != req.current_name:
            await self.p.apps.rename_environment(req.current_name, req.name.value)
        name = req.name.value if req.HasField("name") else req.current_name
        env = next((e for e in await self.p.apps.environments() if e.name == name), None)
        if env is None:
            raise NotFound(f"Environment '{name}' not found")
        return api_pb2.EnvironmentListItem(
            name=env.name,
            environment_id=env.environment_id,
            created_at=env.created_at,
            default=name == DEFAULT_ENVIRONMENT,
        )

    # -- apps --------------------------------------------------------------

    @unary
    async def AppCreate(self, req):
        app = await self.p.apps.create(
            req.environment_name, req.description, req.app_state, req.client_id, dict(req.tags)
        )
        self.p.heartbeat(app.app_id)
        return api_pb2.AppCreateResponse(app_id=app.app_id, app_page_url=self._app_url(app.app_id))

    def _app_url(self, app_id: str) -> str:
        return f"{self.p.settings.server_url}/apps/{app_id}"

    @unary
    async def AppHeartbeat(self, req):
        self.p.heartbeat(req.app_id)
        return empty_pb2.Empty()

    @unary
    async def AppClientDisconnect(self, req):
        app = await self.p.apps.get(req.app_id)
        if app.state in (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING, api_pb2.APP_STATE_UNSPECIFIED):
            await self.p.stop_app(req.app_id)
        elif (
            app.state == api_pb2.APP_STATE_DETACHED and req.reason == api_pb2.APP_DISCONNECT_REASON_ENTRYPOINT_COMPLETED
        ):
            await self.p.entrypoint_completed(req.app_id)
        return empty_pb2.Empty()

    @unary
    async def AppStop(self, req):
        await self.p.apps.get(req.app_id)
        await self.p.stop_app(req.app_id)
        return empty_pb2.Empty()

    @unary
    async def AppPublish(self, req):
        version = await self.p.releases.publish(
            req.app_id,
            req.name,
            req.app_state,
            dict(req.function_ids) | dict(req.class_ids),
            caller.get(),
            req.deployment_tag,
            req.commit_info.SerializeToString() if req.HasField("commit_info") else b"",
            dict(req.tags),
        )
        # deployed_at 0 tells the client nothing changed and no version was made
        return api_pb2.AppPublishResponse(
            url=self._app_url(req.app_id), deployed_at=version.deployed_at if version else 0
        )

    @unary
    async def AppSetTags(self, req):
        await self.p.apps.set_tags(req.app_id, dict(req.tags))
        return empty_pb2.Empty()

    @unary
    async def AppGetTags(self, req):
        return api_pb2.AppGetTagsResponse(tags=(await self.p.apps.get(req.app_id)).tags)

    @unary
    async def AppRollback(self, req):
        version = await self.p.releases.rollback(req.app_id, req.version, caller.get())
        return api_pb2.AppRollbackResponse(url=self._app_url(req.app_id), deployed_at=version.deployed_at)

    @unary
    async def AppRollover(self, req):
        version = await self.p.releases.rollover(req.app_id, caller.get())
        return api_pb2.AppRolloverResponse(url=self._app_url(req.app_id), deployed_at=version.deployed_at)

    @unary
    async def AppDeploymentHistory(self, req):
        await self.p.apps.get(req.app_id)
        versions = await self.p.deployments.history(req.app_id)
        live = await self.p.deployments.live(req.app_id)
        live_version = live.version if live else 0
        return api_pb2.AppDeploymentHistoryResponse(
            app_deployment_histories=[_history_entry(v, live_version) for v in versions],
            production_app_version=live_version,
        )

    @unary
    async def AppGetLayout(self, req):
        await self.p.apps.get(req.app_id)
        return api_pb2.AppGetLayoutResponse(app_layout=await self.p.deployments.app_layout(req.app_id))

    @unary
    async def AppList(self, req):
        apps = await self.p.apps.in_environment(req.environment_name)
        items = []
        for app in apps:
            items.append(
                api_pb2.AppListResponse.AppListItem(
                    app_id=app.app_id,
                    description=app.description or app.name or "",
                    name=app.name or "",
                    state=app.state,
                    created_at=app.created_at,
                    stopped_at=app.stopped_at or 0,
                    n_running_tasks=len(self.p.scheduler.tasks_of_app(app.app_id)),
                )
            )
        return api_pb2.AppListResponse(apps=items)

    @unary
    async def AppGetOrCreate(self, req):
        create = req.object_creation_type == api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING
        app = await self.p.apps.get_or_create(req.environment_name, req.app_name, create)
        return api_pb2.AppGetOrCreateResponse(
            app_id=app.app_id,
            handle_metadata=api_pb2.AppHandleMetadata(
                description=app.description,
                app_id=app.app_id,
                environment_name=app.environment,
                lifecycle=await self._lifecycle(app),
            ),
        )

    @unary
    async def AppGetByDeploymentName(self, req):
        environment = req.environment_name or DEFAULT_ENVIRONMENT
        await self.p.apps.ensure_environment(environment)
        app = await self.p.apps.by_name(environment, req.name)
        if app is not None:
            return api_pb2.AppGetByDeploymentNameResponse(
                app_id=app.app_id, environment_name=environment, lifecycle=await self._lifecycle(app)
            )
        stopped = await self.p.apps.last_stopped(environment, req.name)
        if stopped is not None:
            return api_pb2.AppGetByDeploymentNameResponse(
                previous_app_id=stopped.app_id, environment_name=environment, lifecycle=await self._lifecycle(stopped)
            )
        return api_pb2.AppGetByDeploymentNameResponse(environment_name=environment)

    @unary
    async def AppGetLifecycle(self, req):
        return api_pb2.AppGetLifecycleResponse(lifecycle=await self._lifecycle(await self.p.apps.get(req.app_id)))

    @unary
    async def AppGetInfo(self, req):
        app = await self.p.apps.get(req.app_id)
        info = api_pb2.AppHandleMetadata(
            description=app.name or app.description,
            app_id=app.app_id,
            environment_name=app.environment,
            lifecycle=await self._lifecycle(app),
            functions=await self._functions_of(app.app_id),
        )
        summaries = {}
        for function_id in info.functions.values():
            revision = await self.p.deployments.resolve(function_id)
            ranked = function_data(revision.definition, revision.gpu_choices).ranked_functions
            gpus = [r.function.resources.gpu_config for r in ranked if r.function.resources.gpu_config.gpu_type]
            summaries[function_id] = api_pb2.AppGetInfoResponse.FunctionInfoSummary(gpu_config=gpus)
        return api_pb2.AppGetInfoResponse(info=info, function_info_summaries=summaries)

    async def _lifecycle(self, app: App) -> api_pb2.AppLifecycle:
        lifecycle = api_pb2.AppLifecycle(app_state=app.state, created_at=app.created_at, stopped_at=app.stopped_at or 0)
        if app.state == api_pb2.APP_STATE_DEPLOYED and (live := await self.p.deployments.live(app.app_id)):
            lifecycle.version = live.version
            lifecycle.deployed_at = live.deployed_at
            lifecycle.deployed_by = live.deployed_by
        return lifecycle

    @unary
    async def FunctionGet(self, req):
        function_id = await self.p.releases.deployed_object(
            req.app_name, req.environment_name, req.object_tag, "Function", req.app_version
        )
        if req.app_version:  # its calls run that version, whatever is live
            function_id = await self.p.functions.bind(function_id, b"", version=req.app_version)
        revision = await self.p.deployments.resolve(function_id)
        return api_pb2.FunctionGetResponse(
            function_id=function_id,
            handle_metadata=function_metadata(revision.definition, revision.app_id),
            function=function_data(revision.definition, revision.gpu_choices),
        )

    @unary
    async def FunctionGetById(self, req):
        revision = await self.p.deployments.resolve(req.function_id)
        binding = await self.p.functions.binding(req.function_id)
        return api_pb2.FunctionGetByIdResponse(
            handle_metadata=function_metadata(
                revision.definition, revision.app_id, binding.parent_id if binding else ""
            ),
            function=function_data(revision.definition, revision.gpu_choices),
        )

    @unary
    async def ClassGet(self, req):
        class_id = await self.p.releases.deployed_object(
            req.app_name, req.environment_name, req.object_tag, "Cls", req.app_version
        )
        return api_pb2.ClassGetResponse(class_id=class_id, handle_metadata=api_pb2.ClassHandleMetadata())

    @streaming
    async def AppGetLogs(self, req):
        app_id = req.app_id
        if not app_id and req.task_id:
            task = self.p.scheduler.tasks.get(req.task_id)
            app_id = task.app_id if task else ""
        await self.p.apps.get(app_id)
        after = int(req.last_entry_id) if req.last_entry_id.isdigit() else 0
        entries = await self.p.logs.read(app_id, after, poll_timeout(req.timeout, MAX_POLL))
        wanted = {
            "function_id": req.function_id,
            "task_id": req.task_id,
            "function_call_id": req.function_call_id,
            "input_id": req.input_id,
        }
        matched = [e for e in entries if all(not v or getattr(e, k) == v for k, v in wanted.items())]
        for e in matched:
            yield _log_batch(e)
        if entries:
            if not matched or matched[-1] is not entries[-1]:
                yield api_pb2.TaskLogsBatch(entry_id=str(entries[-1].seq))  # past the entries left out
            return
        if self.p.logs.is_done(app_id) or (await self.p.apps.get(app_id)).stopped_at:
            yield api_pb2.TaskLogsBatch(app_done=True)

    @unary
    async def AppFetchLogs(self, req):
        await self.p.apps.get(req.app_id)
        until = seconds(req.until) if req.HasField("until") else time.time() + 1
        fd = {api_pb2.FILE_DESCRIPTOR_STDOUT: 1, api_pb2.FILE_DESCRIPTOR_STDERR: 2}.get(req.source, 0)
        entries = await self.p.logs.fetch(
            req.app_id,
            seconds(req.since),
            until,
            req.limit,
            req.function_id,
            req.task_id,
            fd,
            req.search_text,
            req.function_call_id,
        )
        return api_pb2.AppFetchLogsResponse(batches=[_log_batch(e) for e in entries])

    @unary
    async def TaskList(self, req):
        tasks = []
        for task in list(self.p.scheduler.tasks.values()):  # a snapshot: containers come and go meanwhile
            if req.app_id and task.app_id != req.app_id:
                continue
            app = await self.p.apps.get(task.app_id)
            if req.environment_name and app.environment != req.environment_name:
                continue
            tasks.append(
                api_pb2.TaskStats(
                    task_id=task.task_id,
                    app_id=task.app_id,
                    app_description=app.name or app.description,
                    started_at=task.started_at,
                    enqueued_at=task.started_at,
                )
            )
        return api_pb2.TaskListResponse(tasks=tasks)

    @unary
    async def TaskGetInfo(self, req):
        record = await self.p.containers.get(req.task_id)
        return api_pb2.TaskGetInfoResponse(
            app_id=record.app_id,
            info=api_pb2.TaskInfo(
                id=record.task_id,
                started_at=record.started_at,
                enqueued_at=record.started_at,
                finished_at=record.finished_at or 0,
            ),
        )

    @unary
    async def TaskGetCommandRouterAccess(self, req):
        if req.task_id not in self.p.scheduler.tasks:
            raise NotFound(f"Container {req.task_id} is not running")
        return api_pb2.TaskGetCommandRouterAccessResponse(
            url=router_url(self.p.settings), jwt=self.p.execs.access(req.task_id)
        )

    @unary
    async def ContainerStop(self, req):
        await self.p.lifecycle.stop_container(req.task_id, req.graceful)
        return api_pb2.ContainerStopResponse()

    # -- mounts and blobs --------------------------------------------------

    @unary
    async def MountBatchedCheckExistence(self, req):
        return api_pb2.MountBatchedCheckExistenceResponse(
            missing_sha256_hex_hashes=self.p.mounts.missing(list(req.sha256_hex_hashes))
        )

    @unary
    async def MountPutFile(self, req):
        if req.data_blob_id:
            if _blob_sha(req.data_blob_id) != req.sha256_hex:  # else it is the file, stored and checked already
                self.p.mounts.put_file(req.sha256_hex, self.p.blobs.get(_blob_sha(req.data_blob_id)))
        elif req.data or req.sha256_hex == EMPTY_SHA256:
            self.p.mounts.put_file(req.sha256_hex, req.data)
        # Without data it only asks whether the file is there, as a volume upload does before sending it.
        return api_pb2.MountPutFileResponse(exists=self.p.blobs.has(req.sha256_hex))

    @unary
    async def MountGetOrCreate(self, req):
        if (
            req.deployment_name
            and not req.files
            and req.object_creation_type in (api_pb2.OBJECT_CREATION_TYPE_UNSPECIFIED,)
        ):
            mount_id = await self.p.mounts.lookup(req.deployment_name)
        else:
            mount_id = await self.p.mounts.create(list(req.files), req.deployment_name)
        return api_pb2.MountGetOrCreateResponse(mount_id=mount_id)

    @unary
    async def BlobCreate(self, req):
        if not req.content_sha256_base64:
            raise InvalidArgument("BlobCreate needs content_sha256_base64")
        try:
            digest = base64.b64decode(req.content_sha256_base64, validate=True)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise InvalidArgument(f"content_sha256_base64 {req.content_sha256_base64!r} is not a base64 SHA-256")
        blob_id = f"bl-{digest.hex()}"
        if req.content_length > MULTIPART_THRESHOLD:
            # In parts the client sends at once, each streamed to disk, then joined and checked.
            part_length = max(MULTIPART_PART, -(-req.content_length // MULTIPART_MAX_PARTS))
            count = -(-req.content_length // part_length)
            upload = api_pb2.MultiPartUpload(
                part_length=part_length,
                upload_urls=[self.blob_urls.upload_part(blob_id, n) for n in range(1, count + 1)],
                completion_url=self.blob_urls.complete(blob_id, count),
            )
            return api_pb2.BlobCreateResponse(
                blob_ids=[blob_id], multiparts=api_pb2.MultiPartUploadList(items=[upload])
            )
        return api_pb2.BlobCreateResponse(
            blob_ids=[blob_id], upload_urls=api_pb2.UploadUrlList(items=[self.blob_urls.upload(blob_id)])
        )

    @unary
    async def BlobGet(self, req):
        if not self.p.blobs.has(_blob_sha(req.blob_id)):
            raise NotFound(f"Blob {req.blob_id} not found")
        return api_pb2.BlobGetResponse(download_url=self.blob_urls.download(req.blob_id))

    # -- images ------------------------------------------------------------

    @unary
    async def ImageGetOrCreate(self, req):
        image_id, result = await self.p.images.get_or_create(
            req.image, req.force_build, req.app_id, req.build_function_id
        )
        response = api_pb2.ImageGetOrCreateResponse(image_id=image_id)
        if result is not None:
            response.result.CopyFrom(result)
            response.metadata.CopyFrom(await self.p.images.metadata(image_id))
        return response

    @streaming
    async def ImageJoinStreaming(self, req):
        after = int(req.last_entry_id) if req.last_entry_id.isdigit() else 0
        wait = poll_timeout(req.timeout or MAX_POLL, MAX_POLL)
        lines, entry, result = await self.p.images.join(req.image_id, after, wait)
        if lines:
            yield api_pb2.ImageJoinStreamingResponse(
                task_logs=[
                    api_pb2.TaskLogs(data=line, file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT) for line in lines
                ],
                entry_id=str(entry),
            )
        if result is not None:
            response = api_pb2.ImageJoinStreamingResponse(result=result, entry_id=str(entry), eof=True)
            if result.status == GenericResult.GENERIC_STATUS_SUCCESS:
                response.metadata.CopyFrom(await self.p.images.metadata(req.image_id))
            yield response

    @unary
    async def ImageFromId(self, req):
        await self.p.images.built(req.image_id)
        return api_pb2.ImageFromIdResponse(image_id=req.image_id, metadata=await self.p.images.metadata(req.image_id))

    # -- secrets -----------------------------------------------------------

    @unary
    async def SecretGetOrCreate(self, req):
        secret = await self.p.secrets.get_or_create(
            req.deployment_name, req.environment_name, req.object_creation_type, dict(req.env_dict),
            list(req.required_keys),
        )  # fmt: skip
        return api_pb2.SecretGetOrCreateResponse(secret_id=secret.secret_id, metadata=secret.metadata())

    @unary
    async def SecretGetInfo(self, req):
        return api_pb2.SecretGetInfoResponse(metadata=(await self.p.secrets.get(req.secret_id)).metadata())

    @unary
    async def SecretList(self, req):
        secrets = await self.p.secrets.in_environment(req.environment_name)
        created_before = req.pagination.created_before or float("inf")
        secrets = [s for s in secrets if s.created_at < created_before]
        if req.pagination.max_objects:
            secrets = secrets[: req.pagination.max_objects]
        return api_pb2.SecretListResponse(
            items=[
                api_pb2.SecretListItem(
                    label=s.name,
                    created_at=s.created_at,
                    environment_name=s.environment,
                    secret_id=s.secret_id,
                    metadata=s.metadata(),
                )  # fmt: skip
                for s in secrets
            ],
            environment_name=req.environment_name,
        )

    @unary
    async def SecretDelete(self, req):
        await self.p.secrets.delete(req.secret_id)
        return empty_pb2.Empty()

    # -- functions ---------------------------------------------------------

    @unary
    async def FunctionPrecreate(self, req):
        function_id = await self.p.functions.precreate(req.app_id, req.function_name, req.existing_function_id)
        return api_pb2.FunctionPrecreateResponse(
            function_id=function_id,
            handle_metadata=api_pb2.FunctionHandleMetadata(
                function_name=req.function_name,
                function_type=req.function_type,
                function_schema=req.function_schema,
                method_handle_metadata=method_metadata(req.method_definitions),
                supported_input_formats=req.supported_input_formats,
                supported_output_formats=req.supported_output_formats,
            ),
        )

    @unary
    async def FunctionCreate(self, req):
        if req.HasField("function"):
            fdef = req.function
            ranked = [api_pb2.FunctionData.RankedFunction(rank=0, function=fdef)]
        elif req.function_data.ranked_functions:
            # gpu= as a list: the definitions differ only in their GPU; placement takes the first that fits.
            ranked = sorted(req.function_data.ranked_functions, key=lambda r: r.rank)
            fdef = ranked[0].function
        else:
            raise InvalidArgument("FunctionCreate needs a function definition")
        if fdef.image_id:
            await self.p.images.built(fdef.image_id)
        await self.p.volumes.check_mounts(list(fdef.volume_mounts))
        choices = tuple(_gpu_choice(r.function.resources.gpu_config) for r in ranked) if len(ranked) > 1 else ()
        fdef = await self.p.web_endpoints.with_urls(req.app_id, fdef)
        revision = await self.p.functions.create(req.app_id, fdef, req.existing_function_id, choices)
        await self.p.web_endpoints.claim(revision.function_id, req.app_id, fdef)
        return api_pb2.FunctionCreateResponse(
            function_id=revision.function_id,
            function=fdef,
            handle_metadata=function_metadata(fdef, req.app_id),
            function_data=function_data(fdef, choices),
        )

    @unary
    async def FunctionBindParams(self, req):
        options = req.function_options if req.HasField("function_options") else None
        if options and options.replace_volume_mounts:
            await self.p.volumes.check_mounts(list(options.volume_mounts))
        bound_id = await self.p.functions.bind(req.function_id, req.serialized_params, options)
        revision = await self.p.releases.call_target(bound_id)
        metadata = function_metadata(revision.definition, revision.app_id, req.function_id)
        return api_pb2.FunctionBindParamsResponse(bound_function_id=bound_id, handle_metadata=metadata)

    @unary
    async def ClassCreate(self, req):
        class_id = await self.p.functions.create_class(req.app_id, "", req.existing_class_id)
        return api_pb2.ClassCreateResponse(class_id=class_id, handle_metadata=api_pb2.ClassHandleMetadata())

    @unary
    async def FunctionUpdateSchedulingParams(self, req):
        current = await self.p.releases.update_autoscaler(req.function_id, req.settings, req.warm_pool_size_override)
        return api_pb2.FunctionUpdateSchedulingParamsResponse(current_settings=_autoscaler_settings(current))

    @unary
    async def FunctionGetSchedulingParams(self, req):
        declared, override, current = await self.p.releases.autoscaler(req.function_id)
        return api_pb2.FunctionGetSchedulingParamsResponse(
            autoscaler_configuration=api_pb2.AutoscalerConfiguration(
                settings=_autoscaler_settings(current),
                default_settings=_autoscaler_settings(declared),
                override_settings=override,
            )
        )

    @unary
    async def FunctionGetCallGraph(self, req):
        calls, inputs, truncated = await self.p.calls.call_graph(req.function_call_id)
        names = {rid: (await self.p.functions.revision(rid)).definition for rid in {c.revision_id for c in calls}}
        return api_pb2.FunctionGetCallGraphResponse(
            function_calls=[
                api_pb2.FunctionCallCallGraphInfo(
                    function_call_id=c.call_id,
                    parent_input_id=c.parent_input_id,
                    function_name=names[c.revision_id].function_name,
                    module_name=names[c.revision_id].module_name,
                )
                for c in calls
            ],
            inputs=[
                api_pb2.InputCallGraphInfo(
                    input_id=i.input_id, function_call_id=i.call_id, status=i.status, task_id=i.task_id
                )
                for i in inputs
            ],
            truncated=truncated,
        )

    @unary
    async def FunctionGetCurrentStats(self, req):
        return self.p.scheduler.current_stats(await self.p.deployments.resolve(req.function_id))

    @unary
    async def FunctionMap(self, req):
        revision = await self.p.releases.call_target(req.function_id)
        items = [(item.idx, item.input) for item in req.pipelined_inputs]
        self._check_inputs(items)
        call, inputs = await self.p.calls.create(
            revision.revision_id, req.function_call_invocation_type, items, req.parent_input_id
        )
        return api_pb2.FunctionMapResponse(
            function_call_id=call.call_id,
            function_call_jwt=call.call_id,
            pipelined_inputs=[_input_item(i) for i in inputs],
            retry_policy=revision.definition.retry_policy,
            max_inputs_outstanding=1000,
        )

    @unary
    async def FunctionPutInputs(self, req):
        items = [(item.idx, item.input) for item in req.inputs]
        self._check_inputs(items)
        inputs = await self.p.calls.put_inputs(req.function_call_id, items)
        return api_pb2.FunctionPutInputsResponse(inputs=[_input_item(i) for i in inputs])

    def _check_inputs(self, items: list[tuple[int, api_pb2.FunctionInput]]) -> None:
        for _, inp in items:
            if inp.args_blob_id and not self.p.blobs.has(_blob_sha(inp.args_blob_id)):
                raise InvalidArgument(f"Input arguments blob {inp.args_blob_id} was not uploaded")

    @unary
    async def FunctionGetOutputs(self, req):
        outputs, last_entry_id, unfinished = await self.p.calls.get_outputs(
            req.function_call_id,
            last_entry_id=req.last_entry_id,
            timeout=poll_timeout(req.timeout, MAX_POLL),
            clear_on_success=req.clear_on_success,
            start_idx=req.start_idx if req.HasField("start_idx") else None,
        )
        return api_pb2.FunctionGetOutputsResponse(
            outputs=outputs,
            idxs=[o.idx for o in outputs],
            last_entry_id=last_entry_id,
            num_unfinished_inputs=unfinished,
        )

    @unary
    async def FunctionRetryInputs(self, req):
        ids = [item.input_jwt for item in req.inputs]
        retried = await self.p.calls.retry_inputs(req.function_call_jwt, ids)
        return api_pb2.FunctionRetryInputsResponse(input_jwts=retried)

    @unary
    async def FunctionCallCancel(self, req):
        await self.p.cancel_call(req.function_call_id, req.terminate_containers)
        return empty_pb2.Empty()

    @unary
    async def FunctionCallFromId(self, req):
        call = await self.p.calls.get(req.function_call_id)
        return api_pb2.FunctionCallFromIdResponse(
            function_call_id=call.call_id, num_inputs=len(call.outputs) + len(call.unfinished)
        )

    @streaming
    async def FunctionCallGetDataOut(self, req):
        call = await self.p.calls.get(req.function_call_id)
        async for chunk in _data_chunks(call, call.data_out, call.data_pulse, req.last_index):
            yield chunk

    @streaming
    async def FunctionCallGetDataIn(self, req):
        call = await self.p.calls.get(req.function_call_id)
        async for chunk in _data_chunks(call, call.data_in, call.data_in_pulse, req.last_index):
            yield chunk

    # -- container side ----------------------------------------------------

    def check_access(self, rpc: str) -> None:
        """Called before every RPC: a container of a function with restrict_modal_access=True
        may only serve its own inputs and outputs."""
        task = self.p.scheduler.tasks.get(sending_task(self))
        revision = self.p.functions.cached(task.revision_id) if task else None
        if revision and (why := access.refusal(revision.definition, rpc)):
            raise GRPCError(Status.PERMISSION_DENIED, why)

    def _task(self):
        task_id = sending_task(self)
        task = self.p.scheduler.tasks.get(task_id)
        if task is None:
            raise NotFound(f"Task {task_id or '(none)'} is not running")
        return task

    @unary
    async def ContainerHello(self, req):
        self.p.scheduler.mark_running(self._task().task_id)
        return empty_pb2.Empty()

    @unary
    async def ContainerServerLifecycleReady(self, req):
        # A server's container has run @enter: it serves once its port accepts connections.
        task = self._task()
        self.p.servers.lifecycle_ready(task, (await self.p.functions.revision(task.revision_id)).definition)
        return empty_pb2.Empty()

    @unary
    async def TaskResult(self, req):
        # The container failed before it could serve (an import error, a failing @enter).
        self._task().startup_failure = req.result
        return empty_pb2.Empty()

    @unary
    async def ContainerHeartbeat(self, req):
        task = self._task()
        cancelled = await self.p.lifecycle.wait_cancellations(task, HEARTBEAT_HOLD)
        response = api_pb2.ContainerHeartbeatResponse()
        if cancelled:
            response.cancel_input_event.input_ids.extend(cancelled)
        return response

    @unary
    async def FunctionGetInputs(self, req):
        task = self._task()
        if not task.ready:
            task.ready, task.ready_at = True, time.time()
        if task.stop.is_set():
            return api_pb2.FunctionGetInputsResponse(inputs=[api_pb2.FunctionGetInputsItem(kill_switch=True)])
        inputs = await self.p.clusters.next_inputs(
            task, max(1, req.batch_max_size), INPUTS_POLL, req.batch_linger_ms / 1000
        )
        if not inputs:
            if task.stop.is_set():
                return api_pb2.FunctionGetInputsResponse(inputs=[api_pb2.FunctionGetInputsItem(kill_switch=True)])
            return api_pb2.FunctionGetInputsResponse()
        task.took_input = True
        return api_pb2.FunctionGetInputsResponse(
            inputs=[
                api_pb2.FunctionGetInputsItem(
                    input_id=i.input_id,
                    input=i.input,
                    function_call_id=i.call_id,
                    function_call_invocation_type=i.invocation_type,
                    retry_count=i.retry_count,
                    function_map_idx=i.idx,
                )
                for i in inputs
            ]
        )

    @unary
    async def FunctionGetDynamicConcurrency(self, req):
        slots = self.p.scheduler.input_slots(self._task().revision_id, req.target_concurrency, req.max_concurrency)
        return api_pb2.FunctionGetDynamicConcurrencyResponse(concurrency=slots)

    @unary
    async def FunctionPutOutputs(self, req):
        task = self._task()
        for item in req.outputs:
            await self.p.clusters.put_output(task, item.input_id, item.result, item.data_format)
        task.idle_since = time.monotonic()  # the scale-down window counts from the last output
        return empty_pb2.Empty()

    @unary
    async def FunctionCallPutDataOut(self, req):
        await self.p.clusters.put_data_out(self._task(), req.function_call_id, list(req.data_chunks))
        return empty_pb2.Empty()


async def _data_chunks(call: Call, chunks: list[api_pb2.DataChunk], pulse: Pulse, after: int):
    """One of a call's data streams from index `after` on, for up to MAX_POLL or until the call is over
    and all is read (the reader asks again when a stream ends, until the call is over)."""
    deadline = time.monotonic() + MAX_POLL
    while time.monotonic() < deadline:
        new = chunks[bisect.bisect_right(chunks, after, key=lambda c: c.index) :]  # chunks are in index order
        for chunk in new:
            yield chunk
            after = chunk.index
        if not call.unfinished and not new:
            return
        await pulse.wait(min(1.0, deadline - time.monotonic()))


def _autoscaler_settings(a: Autoscaling) -> api_pb2.AutoscalerSettings:
    return api_pb2.AutoscalerSettings(
        min_containers=a.min_containers,
        max_containers=a.max_containers,
        buffer_containers=a.buffer_containers,
        scaledown_window=int(a.scaledown_window),
        target_concurrency_float=a.target_concurrency,
    )


def _history_entry(v: Version, live_version: int) -> api_pb2.AppDeploymentHistory:
    entry = api_pb2.AppDeploymentHistory(
        app_id=v.app_id,
        version=v.version,
        client_version=v.client_version,
        deployed_at=v.deployed_at,
        deployed_by=v.deployed_by,
        tag=v.tag,
        rollback_version=v.rollback_version or 0,
        rollback_allowed=v.version != live_version,
    )
    if v.commit_info:
        entry.commit_info.ParseFromString(v.commit_info)
    return entry


def _log_batch(e: LogEntry) -> api_pb2.TaskLogsBatch:
    return api_pb2.TaskLogsBatch(
        task_id=e.task_id,
        function_id=e.function_id,
        entry_id=str(e.seq),
        input_id=e.input_id,
        items=[
            api_pb2.TaskLogs(
                data=e.data,
                file_descriptor=api_pb2.FILE_DESCRIPTOR_STDERR if e.fd == 2 else api_pb2.FILE_DESCRIPTOR_STDOUT,
                timestamp=e.ts,
                container_id=e.task_id,
                function_call_id=e.function_call_id,
                input_id=e.input_id,
            )
        ],
    )


def _gpu_choice(gpu: api_pb2.GPUConfig) -> str:
    return f"{gpu.gpu_type}:{gpu.count or 1}"


def _blob_sha(blob_id: str) -> str:
    if not blob_id.startswith("bl-") or len(blob_id) != 67:
        raise InvalidArgument(f"Malformed blob id {blob_id!r}")
    return blob_id[3:]


def _input_item(i: Input) -> api_pb2.FunctionPutInputsResponseItem:
    return api_pb2.FunctionPutInputsResponseItem(idx=i.idx, input_id=i.input_id, input_jwt=i.input_id)
