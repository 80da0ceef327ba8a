"""Commands run in a running container with `runc exec`: they join its namespaces and cgroup and
take its process settings (user, environment, working directory) unless told otherwise.

An exec's output is kept whole, so a reader may start at any offset and read again after a lost
connection; its stdin is written at offsets, so a write sent twice is written once.
"""

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

CHUNK = 64 * 1024


class Exec:
    def __init__(self, proc: asyncio.subprocess.Process):
        self._proc = proc
        self.output: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self._closed: set[int] = set()  # streams at their end
        self._changed = asyncio.Condition()
        self._stdin_offset = 0
        self._pumps = [asyncio.create_task(self._pump(fd, s)) for fd, s in ((1, proc.stdout), (2, proc.stderr))]

    @property
    def returncode(self) -> int | None:
        """The exit code, -N if a signal N ended it; None while it runs."""
        return self._proc.returncode

    async def wait(self) -> int:
        code = await self._proc.wait()
        await asyncio.gather(*self._pumps)
        return code

    async def read(self, fd: int, offset: int) -> AsyncIterator[bytes]:
        """Stream `fd` (1, 2) from `offset` until the command closes it."""
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.output[fd]) > offset or fd in self._closed)
                data = bytes(self.output[fd][offset:])
            if not data:
                return
            offset += len(data)
            yield data

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        """Write what is new of `data`, which starts at `offset` of the stdin stream; close it at `eof`."""
        stdin = self._proc.stdin
        if offset > self._stdin_offset:
            raise ValueError(f"stdin write at offset {offset}, but {self._stdin_offset} bytes were written")
        fresh = data[self._stdin_offset - offset :]
        if fresh and stdin and not stdin.is_closing():
            stdin.write(fresh)
            self._stdin_offset += len(fresh)
            with contextlib.suppress(ConnectionError):
                await stdin.drain()
        if eof and stdin and not stdin.is_closing():
            stdin.close()

    def kill(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)

    async def _pump(self, fd: int, stream: asyncio.StreamReader | None) -> None:
        while stream and (chunk := await stream.read(CHUNK)):
            async with self._changed:
                self.output[fd] += chunk
                self._changed.notify_all()
        async with self._changed:
            self._closed.add(fd)
            self._changed.notify_all()


async def start_exec(
    runc: list[str], container_id: str, args: list[str], cwd: str, env: dict[str, str], merge_stderr: bool
) -> Exec:
    """`runc exec` of `args` in the container; `runc` is the runc command with its global options."""
    options = [*(["--cwd", cwd] if cwd else []), *(f"--env={k}={v}" for k, v in env.items())]
    proc = await asyncio.create_subprocess_exec(
        *runc,
        "exec",
        *options,
        container_id,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    return Exec(proc)
