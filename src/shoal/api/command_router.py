"""The command router: where the client runs commands in a running container (`modal container
exec`, `Sandbox.exec`) and reads and writes a sandbox's own command. It is served beside the
Modal API; a request shows the container's access token (TaskGetCommandRouterAccess,
SandboxGetCommandRouterAccess) instead of the client's own token."""

from grpclib import GRPCError, Status
from modal_proto import task_command_router_pb2 as sr_pb2
from modal_proto.task_command_router_grpc import TaskCommandRouterBase

from ..control.errors import Unauthenticated
from ..control.execs import Execs
from ..control.sandboxes import Sandboxes
from ..control.secrets import Secrets
from ..runtime import Command
from ..worker.agent import ExecOptions
from .rpc import to_grpc, unimplemented

SERVICE = "/modal.task_command_router.TaskCommandRouter/"
# The environment a command on a terminal gets from the client's PTYInfo.
_TERMINAL_ENV = {"TERM": "env_term", "COLORTERM": "env_colorterm", "TERM_PROGRAM": "env_term_program"}
STDOUT = sr_pb2.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT
SANDBOX_STDOUT = sr_pb2.SANDBOX_STDIO_FILE_DESCRIPTOR_STDOUT
MAX_READY_WAIT = 3600.0  # seconds a wait for a sandbox's readiness is held at most


class CommandRouter(unimplemented(TaskCommandRouterBase)):
    def __init__(self, execs: Execs, sandboxes: Sandboxes, secrets: Secrets):
        self.execs = execs
        self.sandboxes = sandboxes
        self.secrets = secrets

    async def _request(self, stream):
        request = await stream.recv_message()
        self._verify(stream, request.task_id)
        return request

    def _verify(self, stream, task_id: str) -> None:
        token = str(stream.metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            self.execs.verify(token, task_id)
        except Unauthenticated as e:
            raise GRPCError(Status.UNAUTHENTICATED, str(e)) from None

    async def TaskExecStart(self, stream):
        req = await self._request(stream)
        pty = req.pty_info
        try:
            # The command's environment over the container's: its variables and secrets (`env=`,
            # `secrets=`), and on a terminal the client's terminal's kind.
            env = {e.key: e.value for e in req.env}
            env |= await self.secrets.env(list(req.secret_ids))
            env |= await self.secrets.sources_env(list(req.secret_sources))
            if pty.enabled:
                env |= {name: getattr(pty, field) for name, field in _TERMINAL_ENV.items() if getattr(pty, field)}
            options = ExecOptions(
                cwd=req.workdir,
                env=env,
                merge_stderr=req.stderr_config == sr_pb2.TASK_EXEC_STDERR_CONFIG_STDOUT,
                terminal=(pty.winsz_rows or 24, pty.winsz_cols or 80) if pty.enabled else None,
            )
            await self.execs.start(req.task_id, req.exec_id, list(req.command_args), options, req.timeout_secs)
        except Exception as e:
            raise to_grpc(e, "TaskExecStart") from None
        await stream.send_message(sr_pb2.TaskExecStartResponse())

    async def TaskExecStdioRead(self, stream):
        req = await self._request(stream)
        command = self._command(req)
        async for _, data in command.read(1 if req.file_descriptor == STDOUT else 2, req.offset):
            await stream.send_message(sr_pb2.TaskExecStdioReadResponse(data=data))

    async def TaskExecStdinWrite(self, stream):
        req = await self._request(stream)
        await _write_stdin(self._command(req), req.offset, req.data, req.eof)
        await stream.send_message(sr_pb2.TaskExecStdinWriteResponse())

    async def TaskExecStdinWriteStream(self, stream):
        """Stdin in one stream: where it starts, the data, and an end that closes it."""
        start = (await stream.recv_message()).start
        self._verify(stream, start.task_id)
        command, offset = self._command(start), start.offset
        async for message in stream:
            ended = message.HasField("end")
            await _write_stdin(command, offset, message.data, eof=ended)
            offset += len(message.data)
            if ended:
                break
        await stream.send_message(sr_pb2.TaskExecStdinWriteStreamResponse())

    async def TaskExecStdinStatus(self, stream):
        command = self._command(await self._request(stream))
        await stream.send_message(
            sr_pb2.TaskExecStdinStatusResponse(num_bytes_written=command.stdin_offset, closed=command.stdin_closed)
        )

    async def TaskExecWait(self, stream):
        req = await self._request(stream)
        await stream.send_message(_exit_status(sr_pb2.TaskExecWaitResponse, await self._command(req).wait()))

    async def TaskExecPoll(self, stream):
        req = await self._request(stream)
        code = self._command(req).returncode
        await stream.send_message(
            sr_pb2.TaskExecPollResponse() if code is None else _exit_status(sr_pb2.TaskExecPollResponse, code)
        )

    async def SandboxStdioReadV2(self, stream):
        """The sandbox's command's output from an offset, live or after it ended."""
        req = await self._request(stream)
        try:
            command = await self.sandboxes.command(req.task_id)
        except Exception as e:
            raise to_grpc(e, "SandboxStdioReadV2") from None
        if command is None:
            return  # a sandbox without a command has no output
        async for offset, data in command.read(1 if req.file_descriptor == SANDBOX_STDOUT else 2, req.offset):
            await stream.send_message(sr_pb2.SandboxStdioReadV2Response(data=data, starting_offset=offset))

    async def SandboxStdinWriteV2(self, stream):
        req = await self._request(stream)
        try:
            command = await self.sandboxes.stdin(req.task_id)
        except Exception as e:
            raise to_grpc(e, "SandboxStdinWriteV2") from None
        await _write_stdin(command, req.offset, req.data, req.eof)
        await stream.send_message(sr_pb2.SandboxStdinWriteV2Response())

    async def SandboxWaitUntilReady(self, stream):
        req = await self._request(stream)
        # Answered a little before the client's own deadline, which would end the call less clearly.
        timeout = min(req.timeout * 0.9, MAX_READY_WAIT) if req.timeout > 0 else 0.0  # (NaN too)
        try:
            ready_at = await self.sandboxes.wait_until_ready(req.task_id, timeout)
        except TimeoutError:
            raise GRPCError(Status.DEADLINE_EXCEEDED, f"The sandbox was not ready within {timeout:g} s") from None
        except Exception as e:
            raise to_grpc(e, "SandboxWaitUntilReady") from None
        await stream.send_message(sr_pb2.SandboxWaitUntilReadyTcrResponse(ready_at=ready_at))

    async def TaskSnapshotFilesystem(self, stream):
        req = await self._request(stream)
        try:
            image_id = await self.sandboxes.snapshot_filesystem(req.task_id, req.snapshot_id)
        except Exception as e:
            raise to_grpc(e, "TaskSnapshotFilesystem") from None
        await stream.send_message(sr_pb2.TaskSnapshotFilesystemResponse(image_id=image_id))

    def _command(self, req):
        try:
            return self.execs.get(req.task_id, req.exec_id)
        except Exception as e:
            raise to_grpc(e, "TaskExec") from None


def _exit_status(response_type, code: int):
    """An exit code, or the signal that ended the command (a negative code)."""
    return response_type(signal=-code) if code < 0 else response_type(code=code)


async def _write_stdin(command: Command, offset: int, data: bytes, eof: bool) -> None:
    try:
        await command.write_stdin(offset, data, eof)
    except ValueError as e:  # a gap: the client asks TaskExecStdinStatus where to resume
        raise GRPCError(Status.FAILED_PRECONDITION, str(e)) from None
