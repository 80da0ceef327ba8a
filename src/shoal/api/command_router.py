"""The command router: where the client runs commands in a running container (`modal container
exec`). It is served beside the Modal API; a request shows the container's access token
(TaskGetCommandRouterAccess) instead of the client's own token."""

from grpclib import GRPCError, Status
from modal_proto import task_command_router_pb2 as sr_pb2
from modal_proto.task_command_router_grpc import TaskCommandRouterBase

from ..control.errors import Unauthenticated
from ..control.execs import Execs
from .rpc import to_grpc, unimplemented

SERVICE = "/modal.task_command_router.TaskCommandRouter/"
STDOUT = sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT


class CommandRouter(unimplemented(TaskCommandRouterBase)):
    def __init__(self, execs: Execs):
        self.execs = execs

    async def _request(self, stream):
        request = await stream.recv_message()
        token = str(stream.metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            self.execs.verify(token, request.task_id)
        except Unauthenticated as e:
            raise GRPCError(Status.UNAUTHENTICATED, str(e)) from None
        return request

    async def TaskExecStart(self, stream):
        req = await self._request(stream)
        if req.pty_info.enabled:
            raise GRPCError(
                Status.FAILED_PRECONDITION,
                "shoal runs commands in containers without a terminal yet: run `modal container exec --no-pty`",
            )
        try:
            await self.execs.start(
                req.task_id,
                req.exec_id,
                list(req.command_args),
                req.workdir,
                {e.key: e.value for e in req.env},
                req.timeout_secs,
                merge_stderr=req.stderr_config == sr_pb2.TASK_EXEC_STDERR_CONFIG_STDOUT,
            )
        except Exception as e:
            raise to_grpc(e, "TaskExecStart") from None
        await stream.send_message(sr_pb2.TaskExecStartResponse())

    async def TaskExecStdioRead(self, stream):
        req = await self._request(stream)
        command = self._command(req)
        async for data in command.read(1 if req.file_descriptor == STDOUT else 2, req.offset):
            await stream.send_message(sr_pb2.TaskExecStdioReadResponse(data=data))

    async def TaskExecStdinWrite(self, stream):
        req = await self._request(stream)
        try:
            await self._command(req).write_stdin(req.offset, req.data, req.eof)
        except ValueError as e:
            raise GRPCError(Status.FAILED_PRECONDITION, str(e)) from None
        await stream.send_message(sr_pb2.TaskExecStdinWriteResponse())

    async def TaskExecWait(self, stream):
        req = await self._request(stream)
        await stream.send_message(_exit_status(sr_pb2.TaskExecWaitResponse, await self._command(req).wait()))

    async def TaskExecPoll(self, stream):
        req = await self._request(stream)
        code = self._command(req).returncode
        await stream.send_message(
            sr_pb2.TaskExecPollResponse() if code is None else _exit_status(sr_pb2.TaskExecPollResponse, code)
        )

    def _command(self, req):
        try:
            return self.execs.get(req.task_id, req.exec_id)
        except Exception as e:
            raise to_grpc(e, "TaskExec") from None


def _exit_status(response_type, code: int):
    """An exit code, or the signal that ended the command (a negative code)."""
    return response_type(signal=-code) if code < 0 else response_type(code=code)
