"""The socket of a build function's container (Image.run_function): the same protocol as a
function container's, with its one input and its result going to the image builder."""

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from ..control.build_functions import BuildCall
from ..control.platform import Platform
from .blob_urls import BlobUrls
from .rpc import unary
from .servicer import HEARTBEAT_HOLD, INPUTS_POLL, ShoalServicer


class BuildStepServicer(ShoalServicer):
    def __init__(self, platform: Platform, blob_urls: BlobUrls, call: BuildCall):
        super().__init__(platform, blob_urls, call.task_id)
        self.call = call

    @unary
    async def ContainerHello(self, req):
        return empty_pb2.Empty()

    @unary
    async def TaskResult(self, req):
        self.call.finish(req.result)  # it failed before it could take its input (an import error)
        return empty_pb2.Empty()

    @unary
    async def ContainerHeartbeat(self, req):
        await self.call.pulse.wait(HEARTBEAT_HOLD)
        return api_pb2.ContainerHeartbeatResponse()

    @unary
    async def FunctionGetInputs(self, req):
        call = self.call
        fn_input = await call.next_input(INPUTS_POLL)
        if fn_input is not None:
            item = api_pb2.FunctionGetInputsItem(
                input_id=call.input_id, input=fn_input, function_call_id=call.call_id,
                function_call_invocation_type=api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC,
            )  # fmt: skip
            return api_pb2.FunctionGetInputsResponse(inputs=[item])
        if call.finished:
            return api_pb2.FunctionGetInputsResponse(inputs=[api_pb2.FunctionGetInputsItem(kill_switch=True)])
        return api_pb2.FunctionGetInputsResponse()

    @unary
    async def FunctionPutOutputs(self, req):
        for item in req.outputs:
            if item.input_id == self.call.input_id:
                self.call.finish(item.result)
        return empty_pb2.Empty()
