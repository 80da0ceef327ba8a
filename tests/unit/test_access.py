"""restrict_modal_access=True: a container may serve its own inputs and outputs, nothing else."""

from modal_proto import api_pb2
from modal_proto.api_grpc import ModalClientBase

from shoal.control.access import OWN_IO, refusal


def test_what_a_restricted_container_may_call_are_rpcs_of_the_client_protocol():
    assert OWN_IO <= ModalClientBase.__abstractmethods__


def test_a_restricted_function_may_not_call_the_rest_of_the_api():
    restricted = api_pb2.Function(function_name="f", untrusted=True)
    assert refusal(restricted, "FunctionGetInputs") == refusal(restricted, "BlobCreate") == ""
    assert "restrict_modal_access=True" in refusal(restricted, "FunctionMap")
    assert refusal(api_pb2.Function(function_name="g"), "FunctionMap") == ""
