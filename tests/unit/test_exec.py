"""Commands run in a container: their output read from any offset, their stdin written at offsets,
and the access tokens that let a client run them."""

import asyncio
import os
import time

import jwt
import pytest

from shoal.control import execs as execs_module
from shoal.control.errors import NotFound, Unauthenticated
from shoal.control.execs import Execs
from shoal.runtime.exec import Exec
from shoal.worker.agent import ExecOptions

SECRET = b"s" * 32  # as long as the server's own


async def process(*args: str) -> Exec:
    """A plain process in the place of `runc exec`: Exec handles any."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    return Exec(proc)


async def read_all(command: Exec, fd: int, offset: int = 0) -> bytes:
    return b"".join([data async for _, data in command.read(fd, offset)])


async def test_output_is_read_whole_from_any_offset_and_each_stream_apart():
    command = await process("sh", "-c", "printf hello; printf oops >&2; exit 3")
    assert await command.wait() == 3
    assert await read_all(command, 1) == b"hello"
    assert await read_all(command, 1, offset=2) == b"llo"  # a reader that lost its connection goes on
    assert await read_all(command, 2) == b"oops"


async def test_a_long_stream_keeps_its_last_bytes_and_readers_go_on_from_the_oldest(monkeypatch):
    from shoal.runtime import exec as exec_module

    monkeypatch.setattr(exec_module, "KEEP", 100)
    monkeypatch.setattr(exec_module, "TRIM", 50)
    monkeypatch.setattr(exec_module, "READ_MAX", 30)
    command = await process("sh", "-c", "head -c 1000 /dev/zero | tr '\\0' x; printf end")
    await command.wait()
    stream = bytes(1000 * b"x" + b"end")
    kept = len(command.output[1])
    assert 100 <= kept <= 150 and command.dropped[1] + kept == len(stream)
    pieces = [(offset, data) async for offset, data in command.read(1, 0)]
    assert pieces[0][0] == command.dropped[1]  # an offset let go: from the oldest byte kept
    assert all(len(data) <= 30 for _, data in pieces)
    assert b"".join(data for _, data in pieces) == stream[-kept:]


async def test_stdin_written_twice_at_the_same_offset_is_written_once():
    command = await process("cat")
    await command.write_stdin(0, b"abc", eof=False)
    await command.write_stdin(0, b"abcdef", eof=False)  # a retry carrying more
    with pytest.raises(ValueError, match="offset 9, but 6 bytes were written"):
        await command.write_stdin(9, b"x", eof=False)
    await command.write_stdin(6, b"", eof=True)
    assert await command.wait() == 0
    assert await read_all(command, 1) == b"abcdef"


async def test_a_killed_command_reports_its_signal():
    command = await process("sleep", "30")
    assert command.returncode is None
    command.kill()
    assert await command.wait() == -9


async def started(task_id: str, args: list[str], options: ExecOptions) -> Exec:
    return await process(*args)


async def test_access_is_for_one_container_and_expires(monkeypatch):
    execs = Execs(SECRET, started)
    token = execs.access("ta-1")
    execs.verify(token, "ta-1")
    with pytest.raises(Unauthenticated, match="another container"):
        execs.verify(token, "ta-2")
    with pytest.raises(Unauthenticated):
        execs.verify(Execs(b"o" * 32, started).access("ta-1"), "ta-1")
    with pytest.raises(Unauthenticated):  # signed with the server's secret itself, not the key made from it
        execs.verify(jwt.encode({"task_id": "ta-1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "ta-1")
    monkeypatch.setattr(execs_module, "ACCESS_TTL", -10.0)
    with pytest.raises(Unauthenticated, match="expired"):
        execs.verify(execs.access("ta-1"), "ta-1")


async def test_a_command_is_started_once_per_id_and_found_by_it():
    execs = Execs(SECRET, started)
    await execs.start("ta-1", "ex-1", ["echo", "once"], ExecOptions(), 0)
    await execs.start("ta-1", "ex-1", ["echo", "twice"], ExecOptions(), 0)  # the client's retry of the same start
    command = execs.get("ta-1", "ex-1")
    await command.wait()
    assert await read_all(command, 1) == b"once\n"
    with pytest.raises(NotFound):
        execs.get("ta-2", "ex-1")
    execs.close()


async def test_a_command_on_a_terminal_reads_it_and_ends_at_end_of_input():
    ours, theirs = os.openpty()
    proc = await asyncio.create_subprocess_exec("cat", stdin=theirs, stdout=theirs, stderr=theirs)
    os.close(theirs)
    command = Exec(proc, ours)
    await command.write_stdin(0, b"typed\n", eof=False)
    await command.write_stdin(6, b"", eof=True)  # end of input: ^D
    assert await command.wait() == 0
    assert b"typed\r\ntyped\r\n" in await read_all(command, 1)  # the terminal's echo, then cat's copy
    assert await read_all(command, 2) == b""  # a terminal has one output stream
