"""The worker protocol: how a `shoal worker` and the control plane talk.

Two gRPC methods on the control plane's own port, beside the Modal API:
- Connect (stream-stream): the worker says hello with what it offers, then sends
  heartbeats, container output and exits; the control plane sends starts and stops. A
  command run in a container (`modal container exec`) travels there too: the control plane
  sends exec, its stdin and kill, the worker sends back exec_started (or exec_failed), its
  output and exec_exit.
- FetchManifest (unary) and FetchFiles (unary-stream): an image layer's manifest, then
  a tar stream of just the file-store objects the worker does not hold yet; the worker
  keeps them in a layer store of its own, so a file is fetched once whatever layer has it.
- FetchDir (unary-stream): a tar stream of one other directory under the control plane's
  home (the client package, a code mount), which the worker caches whole.
- PutChanges (stream-unary): the other way, a tar stream of what a container changed in its
  file system (a sandbox's snapshot), after a header naming the upload the control plane
  asked for.
- Tunnel (stream-stream): the unary Modal RPCs of the worker's containers, each a record
  (a JSON header line, then the request's bytes) answered by a record with its id; records
  ready together travel as one message, and a message costs the control plane about a
  third of what an RPC of its own does.
Messages are JSON in a BytesValue, so no protocol of our own needs compiling.
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, astuple
from typing import Any

from google.protobuf.wrappers_pb2 import BytesValue
from grpclib.exceptions import StreamTerminatedError

from .agent import ContainerPlan, ExecOptions, Load
from .buckets import BucketMount
from .excess import Excess

CONNECT = "/shoal.Worker/Connect"
FETCH_DIR = "/shoal.Worker/FetchDir"
FETCH_MANIFEST = "/shoal.Worker/FetchManifest"
FETCH_FILES = "/shoal.Worker/FetchFiles"
PUT_CHANGES = "/shoal.Worker/PutChanges"
TUNNEL = "/shoal.Worker/Tunnel"
# How a plan names its lower dirs to a joined worker: "layer:<id>" or "dir:<path under the home>".
LAYER, DIR = "layer:", "dir:"
# pax keeps nanosecond mtimes, which file-store keys include; xattrs and numeric owners travel too.
TAR_OPTIONS = ("--format=posix", "--xattrs", "--xattrs-include=*", "--numeric-owner")
TAR_CHUNK = 1 << 20  # bytes of a tar stream per message
# The metadata a container's requests carry when a worker passes them on.
TASK_ID_HEADER = "x-shoal-task-id"
TASK_SECRET_HEADER = "x-shoal-task-secret"

# A worker sends a heartbeat this often, with its CPU load (see worker/cpu_load.py), what its
# containers used above their reservations (worker/excess.py) and its cache.
HEARTBEAT_INTERVAL = 1.0
# A worker silent for this long is gone: its containers are given up and their inputs run elsewhere.
HEARTBEAT_TIMEOUT = 10.0


async def send_tar(stream, args: list[str], stdin: bytes = b"") -> str:
    """`tar -c` of `args` (files named on stdin, or a directory) sent on a stream as messages;
    returns what tar said when it failed, "" when it did not."""
    tar = await asyncio.create_subprocess_exec(
        "tar", *TAR_OPTIONS, "-cf", "-", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        tar.stdin.write(stdin)
        tar.stdin.close()
        while chunk := await tar.stdout.read(TAR_CHUNK):
            await stream.send_message(BytesValue(value=chunk))
        if await tar.wait() != 0:
            return (await tar.stderr.read()).decode(errors="replace").strip() or f"tar exited with {tar.returncode}"
        return ""
    finally:
        if tar.returncode is None:
            tar.kill()
            await tar.wait()


async def receive_tar(messages: AsyncIterator[BytesValue], dest: str) -> str:
    """A tar stream's messages unpacked into `dest`; returns what tar said when it failed, "" when
    it did not."""
    tar = await asyncio.create_subprocess_exec(
        "tar", *TAR_OPTIONS, "-C", dest, "-xf", "-", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async for chunk in messages:
            tar.stdin.write(chunk.value)
            await tar.stdin.drain()
        tar.stdin.close()
        if await tar.wait() != 0:
            return (await tar.stderr.read()).decode(errors="replace").strip() or f"tar exited with {tar.returncode}"
        return ""
    finally:
        if tar.returncode is None:
            tar.kill()
            await tar.wait()


def pack(message: dict[str, Any]) -> BytesValue:
    return BytesValue(value=json.dumps(message).encode())


def unpack(message: BytesValue | None) -> dict[str, Any] | None:
    return None if message is None else json.loads(message.value)


def heartbeat(load: Load, cache_bytes: int, cache_limit: int) -> dict[str, Any]:
    return {
        "type": "heartbeat",
        "cache_bytes": cache_bytes,
        "cache_limit": cache_limit,
        "cpu_busy": load.cpu_busy,
        "task_cores": load.task_cores,
        "task_memory": load.task_memory,
        "task_excess": {task_id: astuple(excess) for task_id, excess in load.task_excess.items()},
        "task_gpu_utilization": load.task_gpu_utilization,
    }


def load_of(beat: dict[str, Any]) -> Load | None:
    """The readings a heartbeat carries; None from a worker of a version that sent none."""
    if "cpu_busy" not in beat:
        return None
    excess = {task_id: Excess(*e) for task_id, e in beat.get("task_excess", {}).items()}
    return Load(
        beat["cpu_busy"], beat["task_cores"], beat.get("task_memory", {}), excess, beat.get("task_gpu_utilization", {})
    )


def exit_message(task_id: str, code: int, oom: bool, excess: Excess | None) -> dict[str, Any]:
    message = {"type": "exit", "task_id": task_id, "code": code, "oom": oom}
    return message | ({"excess": astuple(excess)} if excess else {})


def excess_of(message: dict[str, Any]) -> Excess | None:
    """What an exit message says the container used above its reservation, if it says."""
    return Excess(*message["excess"]) if "excess" in message else None


def plan_to_json(plan: ContainerPlan) -> dict[str, Any]:
    data = asdict(plan)
    data["container_args"] = base64.b64encode(plan.container_args).decode()
    return data


def plan_from_json(data: dict[str, Any]) -> ContainerPlan:
    return ContainerPlan(
        **{
            **data,
            "container_args": base64.b64decode(data["container_args"]),
            "buckets": [BucketMount(**b) for b in data["buckets"]],
        }
    )


def exec_options_to_json(options: ExecOptions) -> dict[str, Any]:
    return asdict(options)


def exec_options_from_json(data: dict[str, Any]) -> ExecOptions:
    terminal = data.get("terminal")
    return ExecOptions(**{**data, "terminal": tuple(terminal) if terminal else None})


def call_record(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One call or answer in the tunnel: its header (id, and method and metadata, or status) as a
    JSON line, then the payload."""
    return json.dumps(header).encode() + b"\n" + payload


def unpack_calls(message: BytesValue) -> Iterator[tuple[dict[str, Any], bytes]]:
    data, at = message.value, 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        header, _, payload = data[at + 4 : at + 4 + size].partition(b"\n")
        at += 4 + size
        yield json.loads(header), payload


class Outbox:
    """Tunnel records made ready in the same turn of the loop leave as one message, each with
    its length: the stream's cost per message is paid once for them all."""

    def __init__(self, stream: Any):
        self.stream = stream
        self._records: list[bytes] = []
        self._sender: asyncio.Task | None = None

    def put(self, record: bytes) -> None:
        self._records.append(record)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self._records:
            records, self._records = self._records, []
            message = BytesValue(value=b"".join(len(r).to_bytes(4, "big") + r for r in records))
            try:
                await self.stream.send_message(message)
            except (ConnectionError, StreamTerminatedError):
                return  # the other end is gone: the stream's end tells those waiting

    def close(self) -> None:
        if self._sender:
            self._sender.cancel()
