"""Sandboxes through the API (`modal.Sandbox`), in both the client's kinds (see control/sandboxes.py).

Their lifecycle is here, the same for both. The newer kind reads and writes its command's stdio
through the command router (command_router.py); the older, here. Commands run in either
(`Sandbox.exec`) go through the router, as `modal container exec` does.
"""

import asyncio
import codecs
import time

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from ..control.apps import DEFAULT_ENVIRONMENT
from ..control.errors import InvalidArgument, NotFound
from ..control.platform import Platform
from ..control.sandboxes import Sandbox
from .rpc import caller, poll_timeout, router_url, streaming, unary

# Long-polls answer before the client's own attempt timeout would end them.
MAX_WAIT = 50.0
TASK_ID_WAIT = 10.0  # the client asks again at once when told "not yet"; holding spares its polling
LOGS_WAIT = 50.0  # a log stream ends within the client's 55 s; the client then asks again from where it was


class SandboxRpcs:
    p: Platform

    @unary
    async def AuthTokenGet(self, req):
        return api_pb2.AuthTokenGetResponse(token=self.p.execs.auth_token(caller.get()))

    @unary
    async def SandboxCreateV2(self, req):
        sandbox = await self.p.sandboxes.create(
            req.app_id,
            req.definition,
            list(req.secret_sources),
            _tags_of(req.tags),
            bucket_keys={path: dict(keys.contents) for path, keys in req.cloud_bucket_mount_credentials.items()},
        )
        return api_pb2.SandboxCreateV2Response(sandbox_id=sandbox.sandbox_id, metadata=_metadata(sandbox))

    @unary
    async def SandboxCreate(self, req):
        """The older kind names every secret by id, the `env=` dict as an ephemeral one among them."""
        sources = [api_pb2.SecretSource(secret_id=secret_id) for secret_id in req.definition.secret_ids]
        sandbox = await self.p.sandboxes.create(req.app_id, req.definition, sources, _tags_of(req.tags), v2=False)
        return api_pb2.SandboxCreateResponse(sandbox_id=sandbox.sandbox_id, metadata=_metadata(sandbox))

    @streaming
    async def SandboxGetLogs(self, req):
        """The command's stdout or stderr as text, from the byte offset `last_entry_id` names, until
        its end (a batch with `eof`) or for LOGS_WAIT."""
        command = await self.p.sandboxes.output(req.sandbox_id)
        if command is None:
            yield api_pb2.TaskLogsBatch(eof=True, entry_id=req.last_entry_id)
            return
        if not ((entry := req.last_entry_id or "0").isascii() and entry.isdigit()):
            raise InvalidArgument(f"Invalid log entry id {req.last_entry_id!r}")
        offset = int(entry)
        fd = 1 if req.file_descriptor == api_pb2.FILE_DESCRIPTOR_STDOUT else 2
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        deadline = time.monotonic() + LOGS_WAIT
        reading = aiter(command.read(fd, offset))
        while (left := deadline - time.monotonic()) > 0:
            try:
                start, data = await asyncio.wait_for(anext(reading), left)
            except StopAsyncIteration:
                yield api_pb2.TaskLogsBatch(eof=True, entry_id=str(offset))
                return
            except TimeoutError:
                break
            offset = start + len(data)  # from the oldest byte kept, if the reader was further behind
            yield log_batch(decoder, data, offset, req.file_descriptor)
        await reading.aclose()

    @unary
    async def SandboxStdinWrite(self, req):
        await self.p.sandboxes.write_stdin(req.sandbox_id, req.index, req.input, req.eof)
        return api_pb2.SandboxStdinWriteResponse()

    @unary
    async def SandboxGetTaskIdV2(self, req):
        task_id, result = await self.p.sandboxes.task_id(
            req.sandbox_id, poll_timeout(req.timeout, MAX_WAIT) or TASK_ID_WAIT
        )
        return api_pb2.SandboxGetTaskIdResponse(task_id=task_id, task_result=result)

    @unary
    async def SandboxGetCommandRouterAccess(self, req):
        if req.sandbox_id:
            task_id = self.p.sandboxes.task_of(req.sandbox_id)
        elif self.p.sandboxes.is_sandbox_task(req.task_id):
            task_id = req.task_id
        else:
            raise NotFound(f"No sandbox runs in container {req.task_id}")
        return api_pb2.SandboxGetCommandRouterAccessResponse(
            url=router_url(self.p.settings), jwt=self.p.execs.access(task_id)
        )

    @unary
    async def SandboxWaitV2(self, req):
        sandbox = await self.p.sandboxes.wait(req.sandbox_id, poll_timeout(req.timeout, MAX_WAIT))
        return api_pb2.SandboxWaitResponse(result=sandbox.result, metadata=_metadata(sandbox))

    @unary
    async def SandboxGetTunnelsV2(self, req):
        tunnels, result = await self.p.sandboxes.tunnels(req.sandbox_id, poll_timeout(req.timeout, MAX_WAIT))
        return api_pb2.SandboxGetTunnelsResponse(tunnels=tunnels, result=result)

    @unary
    async def SandboxTerminateV2(self, req):
        existing = await self.p.sandboxes.terminate(req.sandbox_id)
        return api_pb2.SandboxTerminateResponse(existing_result=existing)

    @unary
    async def SandboxTagsGetV2(self, req):
        sandbox = await self.p.sandboxes.get(req.sandbox_id)
        return api_pb2.SandboxTagsGetResponse(tags=_tags(sandbox.tags))

    @unary
    async def SandboxTagsSetV2(self, req):
        await self.p.sandboxes.set_tags(req.sandbox_id, _tags_of(req.tags))
        return empty_pb2.Empty()

    @unary
    async def SandboxCreateConnectTokenV2(self, req):
        url, token = self.p.connect_tokens.create(req.sandbox_id, req.port, req.user_metadata)
        return api_pb2.SandboxCreateConnectTokenResponse(url=url, token=token)

    @unary
    async def SandboxSetName(self, req):
        await self.p.sandboxes.set_name(req.sandbox_id, req.name)
        return api_pb2.SandboxSetNameResponse()

    @unary
    async def SandboxGetFromNameV2(self, req):
        environment = req.environment_name or DEFAULT_ENVIRONMENT
        app = await self.p.apps.by_name(environment, req.app_name)
        if app is None:
            raise NotFound(f"App '{req.app_name}' not found in environment '{environment}'")
        sandbox = await self.p.sandboxes.by_name(app.app_id, req.sandbox_name, req.include_terminated)
        return api_pb2.SandboxGetFromNameResponse(sandbox_id=sandbox.sandbox_id, metadata=_metadata(sandbox))

    @unary
    async def SandboxListV2(self, req):
        found = await self.p.sandboxes.list(
            req.app_id,
            req.environment_name or DEFAULT_ENVIRONMENT,
            _tags_of(req.tags),
            req.include_finished,
            req.before_timestamp,
        )
        return api_pb2.SandboxListResponse(sandboxes=[_info(s) for s in found])


def log_batch(decoder: codecs.IncrementalDecoder, data: bytes, end: int, fd: int) -> api_pb2.TaskLogsBatch:
    """`data`, which ends at byte `end` of the stream, as text. Its entry id is the offset the next
    read starts from: a character cut at the end of `data` is sent whole with what follows."""
    text = decoder.decode(data)
    entry_id = str(end - len(decoder.getstate()[0]))
    return api_pb2.TaskLogsBatch(items=[api_pb2.TaskLogs(data=text, file_descriptor=fd)], entry_id=entry_id)


def _metadata(sandbox: Sandbox) -> api_pb2.SandboxHandleMetadata:
    return api_pb2.SandboxHandleMetadata(app_id=sandbox.app_id, result=sandbox.result)


def _tags(tags: dict[str, str]) -> list[api_pb2.SandboxTag]:
    return [api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in tags.items()]


def _tags_of(protos) -> dict[str, str]:
    return {tag.tag_name: tag.tag_value for tag in protos}


def _info(sandbox: Sandbox) -> api_pb2.SandboxInfo:
    return api_pb2.SandboxInfo(
        id=sandbox.sandbox_id,
        created_at=sandbox.created_at,
        app_id=sandbox.app_id,
        tags=_tags(sandbox.tags),
        name=sandbox.name or "",
        image_id=sandbox.image_id,
        timeout_secs=int(sandbox.timeout_secs),
        task_info=api_pb2.TaskInfo(
            id=sandbox.task_id,
            started_at=sandbox.created_at,
            finished_at=sandbox.finished_at or 0,
            result=sandbox.result,
            sandbox_id=sandbox.sandbox_id,
        ),
        metadata=_metadata(sandbox),
    )


# The older kind's RPCs that ask the same as the newer's.
for _name in (
    "GetTaskId",
    "GetTunnels",
    "Wait",
    "Terminate",
    "TagsGet",
    "TagsSet",
    "GetFromName",
    "List",
    "CreateConnectToken",
):
    setattr(SandboxRpcs, f"Sandbox{_name}", getattr(SandboxRpcs, f"Sandbox{_name}V2"))
