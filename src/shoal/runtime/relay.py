"""A connection passed on to another address: its bytes copied both ways."""

import asyncio
import contextlib
import ssl

CHUNK = 64 * 1024


async def relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, first: bytes = b""
) -> None:
    """Pass a connection on to `host`:`port`, `first` (what was read of it already) ahead of the rest,
    until the far end closes; closes the connection. With nothing listening there, it just closes."""
    try:
        try:
            inner_reader, inner_writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        inner_writer.write(first)
        # The client's end of input is passed on; the far end's end of its answer ends the connection
        # (TLS has no half-close to pass it on with).
        upward = asyncio.create_task(_copy(reader, inner_writer))
        try:
            await _copy(inner_reader, writer)
        finally:
            upward.cancel()
            inner_writer.close()
    finally:
        writer.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
