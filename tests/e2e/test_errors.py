"""Bad input gets a clear error and the server keeps serving."""

import asyncio
import json
import os

import pytest
from conftest import running_shoal
from grpclib import GRPCError, Status
from grpclib.client import Channel
from modal_proto import api_grpc, api_pb2
from modal_version import __version__ as CLIENT_VERSION
from postgres import fresh_database

from shoal.api.rpc import implemented_rpcs
from shoal.api.servicer import ShoalServicer

# The RPCs that hold a request until there is something to answer (up to 50 s): the junk
# requests' deadline may end them first.
LONG_POLLS = {
    "AppGetLogs",
    "ContainerHeartbeat",
    "FunctionCallGetDataOut",
    "FunctionGetInputs",
    "FunctionGetOutputs",
    "ImageJoinStreaming",
}


def call(shoal, rpc: str, request, *, version: str = CLIENT_VERSION, token_id: str = "", secret: str | None = None):
    env = shoal.client_env()
    metadata = {
        "x-modal-client-version": version,
        "x-modal-client-type": str(api_pb2.CLIENT_TYPE_CLIENT),
        "x-modal-token-id": token_id or env["MODAL_TOKEN_ID"],
        "x-modal-token-secret": secret if secret is not None else env["MODAL_TOKEN_SECRET"],
    }

    async def go():
        channel = Channel("127.0.0.1", shoal.port)
        try:
            return await getattr(api_grpc.ModalClientStub(channel), rpc)(request, metadata=metadata)
        finally:
            channel.close()

    return asyncio.run(go())


def expect_error(status: Status, *args, **kwargs) -> str:
    with pytest.raises(GRPCError) as info:
        call(*args, **kwargs)
    assert info.value.status == status, info.value
    return info.value.message


def test_other_client_versions_are_refused_naming_the_supported_one(shoal):
    from google.protobuf import empty_pb2

    message = expect_error(Status.FAILED_PRECONDITION, shoal, "ClientHello", empty_pb2.Empty(), version="0.99.0")
    assert CLIENT_VERSION in message


def test_wrong_token_is_refused(shoal):
    from google.protobuf import empty_pb2

    message = expect_error(Status.UNAUTHENTICATED, shoal, "ClientHello", empty_pb2.Empty(), secret="as-wrong")
    assert "secret" in message


def test_unknown_ids_are_not_found(shoal):
    expect_error(Status.NOT_FOUND, shoal, "FunctionMap", api_pb2.FunctionMapRequest(function_id="fu-nope"))
    expect_error(
        Status.NOT_FOUND, shoal, "FunctionGetOutputs", api_pb2.FunctionGetOutputsRequest(function_call_id="fc-nope")
    )
    expect_error(Status.INVALID_ARGUMENT, shoal, "BlobGet", api_pb2.BlobGetRequest(blob_id="bl-short"))
    expect_error(Status.INVALID_ARGUMENT, shoal, "BlobCreate", api_pb2.BlobCreateRequest(content_sha256_base64="x-1"))
    expect_error(Status.NOT_FOUND, shoal, "EnvironmentUpdate", api_pb2.EnvironmentUpdateRequest(current_name="nope"))
    # ...and the server is still answering.
    from google.protobuf import empty_pb2

    assert call(shoal, "ClientHello", empty_pb2.Empty()) is not None


def test_unimplemented_rpcs_name_the_feature(shoal):
    message = expect_error(Status.UNIMPLEMENTED, shoal, "SharedVolumeList", api_pb2.SharedVolumeListRequest())
    assert "Shared volume list" in message


def test_unimplemented_feature_through_the_cli(shoal):
    proc = shoal.modal("nfs", "list", check=False)
    assert proc.returncode != 0
    assert "shoal does not support this feature yet" in proc.stdout + proc.stderr


def test_a_feature_shoal_lacks_is_refused_not_ignored(shoal):
    proc = shoal.modal("deploy", "unsupported.py", check=False)
    assert proc.returncode != 0
    assert "'with_bucket' uses what shoal does not support yet: a CloudBucketMount with oidc_auth_role_arn" in (
        proc.stdout + proc.stderr
    )


def test_new_token_is_accepted_while_running(shoal):
    from google.protobuf import empty_pb2

    lines = shoal.shoal("token", "new").stdout.splitlines()
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    response = call(
        shoal,
        "ClientHello",
        empty_pb2.Empty(),
        token_id=exports["MODAL_TOKEN_ID"],
        secret=exports["MODAL_TOKEN_SECRET"],
    )
    assert response is not None


def test_an_oversized_request_is_refused_unread(shoal):
    huge = api_pb2.FunctionInput(args=b"x" * (129 * 1024**2))  # the client sends anything over 2 MiB as a blob
    item = api_pb2.FunctionPutInputsItem(input=huge)
    request = api_pb2.FunctionMapRequest(function_id="fu-any", pipelined_inputs=[item])
    message = expect_error(Status.RESOURCE_EXHAUSTED, shoal, "FunctionMap", request)
    assert "over shoal's limit of 128 MiB" in message
    from google.protobuf import empty_pb2

    assert call(shoal, "ClientHello", empty_pb2.Empty()) is not None


def test_a_client_path_that_climbs_out_is_refused(shoal):
    """Mount and build-context paths name files below a root on the server's machine; hashes name blobs."""
    climbing = api_pb2.MountFile(filename="/../../etc/cron.d/x", sha256_hex="0" * 64)
    message = expect_error(
        Status.INVALID_ARGUMENT, shoal, "MountGetOrCreate", api_pb2.MountGetOrCreateRequest(files=[climbing])
    )
    assert "no '..'" in message
    # A "hash" that is a path to a file the server has is not an uploaded file.
    not_a_hash = api_pb2.MountFile(filename="/app/x", sha256_hex="../../../../../../etc/hostname")
    message = expect_error(
        Status.INVALID_ARGUMENT, shoal, "MountGetOrCreate", api_pb2.MountGetOrCreateRequest(files=[not_a_hash])
    )
    assert "not uploaded" in message
    answer = call(
        shoal, "MountBatchedCheckExistence", api_pb2.MountBatchedCheckExistenceRequest(sha256_hex_hashes=["../x"])
    )
    assert list(answer.missing_sha256_hex_hashes) == ["../x"]
    context = api_pb2.ImageContextFile(filename="../../../etc/cron.d/x", data=b"* * * * * root true\n")
    image = api_pb2.Image(dockerfile_commands=["FROM python:3.11-slim-bookworm"], context_files=[context])
    build = api_pb2.ImageGetOrCreateRequest(image=image)
    message = expect_error(Status.INVALID_ARGUMENT, shoal, "ImageGetOrCreate", build)
    assert "no '..'" in message
    assert not os.path.exists("/etc/cron.d/x")


def _unexpected(rpc: str, outcome: str) -> bool:
    return outcome.startswith(("INTERNAL", "UNKNOWN")) or (outcome == "deadline" and rpc not in LONG_POLLS)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_rpc_answers_junk_with_a_deliberate_error(backend, request):
    """Every RPC shoal implements, sent requests of junk (apps/junk_requests.py), many at once,
    from a container and from a client: each answers, with its result or an error that says
    what was wrong, never an internal error; nothing fails behind the answers; and the server
    goes on serving."""
    up_args: tuple[str, ...] = ()
    if backend == "postgresql":
        url = asyncio.run(fresh_database(request.getfixturevalue("postgres_url"), f"junk_{os.getpid()}"))
        up_args = ("--database", url)
    # A store of its own: the junk makes environments, secrets and images no other test expects.
    with running_shoal(clone_images=True, up_args=up_args) as own:
        proc = own.python("junk_requests.py", "40", timeout=900)
        sent = json.loads(proc.stdout.strip().splitlines()[-1])
        assert set(sent["outside"]) == implemented_rpcs(ShoalServicer)
        assert {"ContainerHello", "FunctionGetInputs", "FunctionPutOutputs"} <= set(sent["inside"])
        wrong = {
            (side, rpc): bad
            for side, outcomes in sent.items()
            for rpc, found in outcomes.items()
            if (bad := [o for o in found if _unexpected(rpc, o)])
        }
        assert not wrong, wrong
        assert "Traceback" not in (own.home / "server.log").read_text(errors="replace")
        assert "echo 3 -> 3" in own.modal("run", "junk_requests.py::main", "--x", "3").stdout
