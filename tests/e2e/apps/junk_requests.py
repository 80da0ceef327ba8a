"""Sends every RPC shoal implements requests made of junk, and prints what each answered.

    python junk_requests.py ROUNDS    (with the client's environment from `shoal env`)

It deploys a small app first, so that a request's id fields can name real objects (an
app, a function, a call, an image, a secret, a volume, a dict, a queue) while the rest of
it is junk: out-of-range numbers, NaN, unknown enum values, odd strings, paths that climb
out ("../.."). Each RPC gets ROUNDS requests, the same ones on every run (seeded), sent
at once so that the server also handles them concurrently; the RPCs that end an app or
an environment go last. They are sent twice: from a container of the app, over its own socket (so the
RPCs only a container may make get past "which task are you"), then as a client.
The last line printed is JSON: {"inside"|"outside": {rpc: sorted distinct outcomes}},
an outcome being "ok", "deadline" or "STATUS: message".
"""

import asyncio
import io
import json
import math
import os
import random
import sys

import modal
from google.protobuf.descriptor import FieldDescriptor
from grpclib import GRPCError
from grpclib.client import Channel, UnaryStreamMethod
from modal_proto import api_grpc, api_pb2
from modal_version import __version__ as CLIENT_VERSION

app = modal.App("e2e-junk")


@app.function()
def echo(x: int) -> int:
    return x


@app.cls()
class Holder:
    value: int = modal.parameter(default=0)

    @modal.method()
    def get(self) -> int:
        return self.value


@app.local_entrypoint()
def main(x: int):
    print(f"echo {x} -> {echo.remote(x)}")


ENDING = ("AppClientDisconnect", "AppStop", "ContainerStop", "EnvironmentDelete")
DEADLINE = 5.0  # long-polls wait up to 50 s for what they poll; any other RPC answers well within this
T = FieldDescriptor
INTS = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1),
    T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1),
    T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_FIXED64: (0, 2**64 - 1),
}
STRINGS = ("", "x", "\u2603 junk", "a" * 65, "b" * 5000, "../../../../etc/passwd", "/", "\x00", "-1", "1e999")
BYTES = (b"", b"\x00junk", b"\x80\x04K\x01.", bytes(range(256)))
FLOATS = (0.0, -1.0, 0.5, 1e30, math.inf, math.nan)


def junk(message, rng: random.Random, ids: dict[str, str], depth: int = 0) -> None:
    """Fill some of `message`'s fields: ids from `ids` by field name, junk elsewhere."""
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.3 or (field.containing_oneof and message.WhichOneof(field.containing_oneof.name)):
            continue
        if field.type == T.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            entries = getattr(message, field.name)
            key_field, value_field = (field.message_type.fields_by_name[f] for f in ("key", "value"))
            for _ in range(rng.randint(1, 3)):
                key = _scalar(key_field, rng, ids)
                if value_field.type == T.TYPE_MESSAGE:
                    if depth < 3:
                        junk(entries[key], rng, ids, depth + 1)
                else:
                    entries[key] = _scalar(value_field, rng, ids, field.name)
        elif field.is_repeated:
            values = getattr(message, field.name)
            for _ in range(rng.randint(1, 3)):
                if field.type != T.TYPE_MESSAGE:
                    values.append(_scalar(field, rng, ids))
                elif depth < 3:
                    junk(values.add(), rng, ids, depth + 1)
        elif field.type != T.TYPE_MESSAGE:
            setattr(message, field.name, _scalar(field, rng, ids))
        elif depth < 3:
            junk(getattr(message, field.name), rng, ids, depth + 1)


def _scalar(field, rng: random.Random, ids: dict[str, str], name: str = ""):
    name = name or field.name
    if field.type == T.TYPE_STRING:
        real = [v for k, v in ids.items() if name.endswith(k)]
        return rng.choice(real * 4 + list(STRINGS))
    if field.type == T.TYPE_BYTES:
        return rng.choice(BYTES)
    if field.type in INTS:
        low, high = INTS[field.type]
        return rng.choice((0, 1, 100, 10**6, max(low, -1), low, high, rng.randint(low, high)))
    if field.type in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
        return rng.choice(FLOATS)
    if field.type == T.TYPE_BOOL:
        return rng.random() < 0.5
    if field.type == T.TYPE_ENUM:
        return rng.choice([v.number for v in field.enum_type.values] + [999])
    raise TypeError(field.type)


def real_ids() -> dict[str, str]:
    """Objects for id fields to name: the deployed app and its function, a call, an image, a secret,
    a volume with a file, a dict and a queue with an entry each."""
    app.deploy()
    call = echo.spawn(1)
    call.get(timeout=120)
    holder = modal.Cls.from_name(app.name, "Holder").hydrate()
    other = modal.App("e2e-junk-objects")
    image, secret = modal.Image.debian_slim(), modal.Secret.from_dict({"JUNK": "1"})
    volume = modal.Volume.from_name("e2e-junk-volume", create_if_missing=True)
    shared_dict = modal.Dict.from_name("e2e-junk-dict", create_if_missing=True)
    shared_queue = modal.Queue.from_name("e2e-junk-queue", create_if_missing=True)
    with other.run():
        image.build(other)
        secret.hydrate()
        volume.hydrate()
        with volume.batch_upload() as upload:
            upload.put_file(io.BytesIO(b"junk"), "/a/file.txt")
        shared_dict["key"] = "value"
        shared_queue.put("item")
    return {
        "app_id": app.app_id,
        "app_name": app.name,
        "environment_name": "main",
        "function_id": echo.object_id,
        "function_call_id": call.object_id,
        "class_id": holder.object_id,
        "image_id": image.object_id,
        "secret_id": secret.object_id,
        "volume_id": volume.object_id,
        "dict_id": shared_dict.object_id,
        "queue_id": shared_queue.object_id,
        "object_tag": "echo",
    }


async def answer(method, request, metadata) -> str:
    try:
        if isinstance(method, UnaryStreamMethod):
            async with method.open(metadata=metadata, timeout=DEADLINE) as stream:
                await stream.send_message(request, end=True)
                async for _ in stream:
                    pass
        else:
            await method(request, metadata=metadata, timeout=DEADLINE)
        return "ok"
    except GRPCError as e:
        if e.status.name == "DEADLINE_EXCEEDED":
            return "deadline"
        return f"{e.status.name}: {e.message}"
    except asyncio.TimeoutError:
        return "deadline"


async def send_all(names: list[str], rounds: int, ids: dict[str, str], target: dict, metadata: dict) -> dict:
    channel = Channel(**target)  # made in the loop that uses it
    stub = api_grpc.ModalClientStub(channel)
    outcomes: dict[str, list[str]] = {}
    try:
        for name in sorted(names, key=lambda n: (n in ENDING, n)):
            method = getattr(stub, name)
            requests = []
            for seed in range(rounds):
                request = method.request_type()
                junk(request, random.Random(f"{name}/{seed}"), ids)
                requests.append(request)
            answers = await asyncio.gather(*(answer(method, r, metadata) for r in requests))
            outcomes[name] = sorted(set(answers))
    finally:
        channel.close()
    return outcomes


@app.function()
def from_inside(names: list[str], rounds: int, ids: dict[str, str]) -> dict:
    """The junk sent by a container over its own socket, as its task: what a container's code could send.
    The RPCs that end an app or a container are left out: they would end this one."""
    target = {"path": os.environ["MODAL_SERVER_URL"].removeprefix("unix://")}
    metadata = {"x-modal-client-version": CLIENT_VERSION, "x-modal-client-type": str(api_pb2.CLIENT_TYPE_CONTAINER)}
    return asyncio.run(send_all([n for n in names if n not in ENDING], rounds, ids, target, metadata))


def from_outside(names: list[str], rounds: int, ids: dict[str, str]) -> dict:
    host, port = os.environ["MODAL_SERVER_URL"].removeprefix("http://").rsplit(":", 1)
    metadata = {
        "x-modal-client-version": CLIENT_VERSION,
        "x-modal-client-type": str(api_pb2.CLIENT_TYPE_CLIENT),
        "x-modal-token-id": os.environ["MODAL_TOKEN_ID"],
        "x-modal-token-secret": os.environ["MODAL_TOKEN_SECRET"],
    }
    return asyncio.run(send_all(names, rounds, ids, {"host": host, "port": int(port)}, metadata))


if __name__ == "__main__":
    # Imported here, not at the top: the app's containers import this file too, and they have no shoal.
    from shoal.api.rpc import implemented_rpcs
    from shoal.api.servicer import ShoalServicer

    names, rounds, ids = sorted(implemented_rpcs(ShoalServicer)), int(sys.argv[1]), real_ids()
    inside = from_inside.remote(names, rounds, ids)
    print(json.dumps({"inside": inside, "outside": from_outside(names, rounds, ids)}))
