"""Bad input gets a clear error and the server keeps serving."""

import asyncio

import pytest
from grpclib import GRPCError, Status
from grpclib.client import Channel
from modal_proto import api_grpc, api_pb2
from modal_version import __version__ as CLIENT_VERSION


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
    message = expect_error(Status.UNIMPLEMENTED, shoal, "SandboxCreate", api_pb2.SandboxCreateRequest())
    assert "Sandbox create" in message


def test_unimplemented_feature_through_the_cli(shoal):
    proc = shoal.modal("volume", "list", check=False)
    assert proc.returncode != 0
    assert "shoal does not support this feature yet" in proc.stdout + proc.stderr


def test_a_feature_shoal_lacks_is_refused_at_deploy_not_ignored(shoal):
    proc = shoal.modal("deploy", "scheduled.py", check=False)
    assert proc.returncode != 0
    assert "'tick' uses what shoal does not support yet: schedule=" in proc.stdout + proc.stderr
    # An ephemeral run fires no schedule (on Modal neither): the function runs when called.
    assert "tick" in shoal.modal("run", "scheduled.py::tick").stdout


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
