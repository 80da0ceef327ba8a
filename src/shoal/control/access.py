"""What a container of a function declared with `restrict_modal_access=True` may ask of shoal:
what serves its own inputs and outputs, and nothing else (no other functions, apps or objects)."""

from modal_proto import api_pb2

OWN_IO = frozenset(
    {
        "ClientHello",
        "ContainerHello",
        "ContainerHeartbeat",
        "ContainerStop",
        "ContainerLog",
        "TaskResult",
        "ContainerServerLifecycleReady",
        "FunctionGetInputs",
        "TaskClusterHello",
        "FunctionPutOutputs",
        "FunctionGetDynamicConcurrency",
        "FunctionCallPutDataOut",
        "FunctionCallGetDataIn",
        "BlobCreate",
        "BlobGet",
        # its volumes' commit and reload, which the client also sends as the container exits
        "VolumeCommit",
        "VolumeReload",
    }
)


def refusal(definition: api_pb2.Function, rpc: str) -> str:
    """Why a container of `definition` may not call `rpc`, or "" when it may."""
    if definition.untrusted and rpc not in OWN_IO:
        return f"'{definition.function_name}' has restrict_modal_access=True: its containers may not call {rpc}"
    return ""
