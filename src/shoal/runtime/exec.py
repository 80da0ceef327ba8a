"""Commands run in a running container with `runc exec`: they join its namespaces and cgroup and
take its process settings (user, environment, working directory) unless told otherwise.

An exec's output is kept, so a reader may start at any offset and read again after a lost
connection; its stdin is written at offsets, so a write sent twice is written once. On a
terminal, the command's output is one stream (stdout). Of a stream longer than KEEP, the last
KEEP bytes are kept: a command that runs for days and prints all along does not fill the memory.
"""

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator

CHUNK = 64 * 1024
KEEP = 64 * 1024**2  # bytes of each output stream kept at least
TRIM = 16 * 1024**2  # beyond KEEP, what is let go at once (not a copy of KEEP at every write)
READ_MAX = 1024**2  # bytes a reader gets at most at once: one message of a stream to the client
EOT = b"\x04"  # end of input, on a terminal


class Command:
    """A command's output, kept whole for readers at any offset, and its stdin, written at offsets;
    where it runs and how its input reaches it is a subclass's."""

    def __init__(self) -> None:
        self.output: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.dropped: dict[int, int] = {1: 0, 2: 0}  # bytes of each stream let go from its start
        self._closed: set[int] = set()  # streams at their end
        self._changed = asyncio.Condition()
        self.stdin_offset = 0  # bytes of stdin written
        self.stdin_closed = False

    @property
    def returncode(self) -> int | None:
        """The exit code, -N if a signal N ended it; None while it runs."""
        raise NotImplementedError

    async def wait(self) -> int:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def end_offset(self, fd: int) -> int:
        return self.dropped[fd] + len(self.output[fd])

    async def read(self, fd: int, offset: int) -> AsyncIterator[tuple[int, bytes]]:
        """Stream `fd` (1, 2) from `offset` until the command closes it, as (offset, data): from
        the oldest byte kept, if `offset` names one already let go."""
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda: self.end_offset(fd) > offset or fd in self._closed)
                offset = max(offset, self.dropped[fd])
                start = offset - self.dropped[fd]
                data = bytes(self.output[fd][start : start + READ_MAX])
            if not data:
                return
            yield offset, data
            offset += len(data)

    async def write_stdin(self, offset: int, data: bytes, eof: bool) -> None:
        """Write what is new of `data`, which starts at `offset` of the stdin stream; close it at `eof`."""
        if offset > self.stdin_offset:
            raise ValueError(f"stdin write at offset {offset}, but {self.stdin_offset} bytes were written")
        fresh = data[self.stdin_offset - offset :]
        if fresh and not self.stdin_closed:
            await self._write(fresh)
            self.stdin_offset += len(fresh)
        if eof and not self.stdin_closed:
            self.stdin_closed = True
            await self._close_stdin()

    async def _write(self, data: bytes) -> None:
        raise NotImplementedError

    async def _close_stdin(self) -> None:
        raise NotImplementedError

    async def add(self, fd: int, chunk: bytes) -> None:
        async with self._changed:
            kept = self.output[fd]
            kept += chunk
            if len(kept) > KEEP + TRIM:
                excess = len(kept) - KEEP
                del kept[:excess]
                self.dropped[fd] += excess
            self._changed.notify_all()

    async def end(self, fd: int) -> None:
        async with self._changed:
            self._closed.add(fd)
            self._changed.notify_all()


class Exec(Command):
    """A command `runc exec` runs, this process's child."""

    def __init__(self, proc: asyncio.subprocess.Process, terminal: int | None = None):
        super().__init__()
        self._proc = proc
        self._terminal = terminal  # the terminal's master end, if the command has one
        if terminal is None:
            self._pumps = [asyncio.create_task(self._pump(fd, s)) for fd, s in ((1, proc.stdout), (2, proc.stderr))]
        else:
            self._closed.add(2)  # a terminal has one output stream
            self._pumps = [asyncio.create_task(self._pump_terminal(terminal))]

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        code = await self._proc.wait()
        await asyncio.gather(*self._pumps)
        return code

    def kill(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL)

    async def _write(self, data: bytes) -> None:
        if self._terminal is not None:
            await asyncio.to_thread(_write_all, self._terminal, data)
            return
        stdin = self._proc.stdin
        if stdin and not stdin.is_closing():
            stdin.write(data)
            with contextlib.suppress(ConnectionError):
                await stdin.drain()

    async def _close_stdin(self) -> None:
        if self._terminal is not None:
            await asyncio.to_thread(_write_all, self._terminal, EOT)
        elif self._proc.stdin and not self._proc.stdin.is_closing():
            self._proc.stdin.close()

    async def _pump(self, fd: int, stream: asyncio.StreamReader | None) -> None:
        while stream and (chunk := await stream.read(CHUNK)):
            await self.add(fd, chunk)
        await self.end(fd)

    async def _pump_terminal(self, terminal: int) -> None:
        try:
            while chunk := await asyncio.to_thread(_read_terminal, terminal):
                await self.add(1, chunk)
        finally:
            os.close(terminal)
            await self.end(1)


def _read_terminal(terminal: int) -> bytes:
    try:
        return os.read(terminal, CHUNK)
    except OSError:  # EIO: the command and everything it started let go of the terminal
        return b""


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


async def start_exec(
    runc: list[str],
    container_id: str,
    args: list[str],
    cwd: str,
    env: dict[str, str],
    merge_stderr: bool,
    terminal: tuple[int, int] | None = None,
) -> Exec:
    """`runc exec` of `args` in the container; `runc` is the runc command with its global options;
    `terminal`: (rows, columns) of a terminal to run it on."""
    options = [*(["--cwd", cwd] if cwd else []), *(f"--env={k}={v}" for k, v in env.items())]
    if terminal is None:
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
    # runc makes the container's terminal and copies between it and its own stdio: a terminal whose
    # other end is ours, where the command's output is read and its input written.
    ours, runcs = os.openpty()
    rows, columns = terminal
    fcntl.ioctl(runcs, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    try:
        proc = await asyncio.create_subprocess_exec(
            *runc,
            "exec",
            "--tty",
            *options,
            container_id,
            *args,
            stdin=runcs,
            stdout=runcs,
            stderr=runcs,
            start_new_session=True,
        )
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(runcs)
    return Exec(proc, ours)
