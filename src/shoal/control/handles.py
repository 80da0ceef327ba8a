"""Handle metadata: what the client needs to know to call a function or its methods."""

from collections.abc import Mapping

from modal_proto import api_pb2


def method_metadata(
    method_definitions: Mapping[str, api_pb2.MethodDefinition],
) -> dict[str, api_pb2.FunctionHandleMetadata]:
    return {
        name: api_pb2.FunctionHandleMetadata(
            function_name=m.function_name,
            function_type=m.function_type,
            web_url=m.web_url,
            is_method=True,
            use_method_name=name,
            function_schema=m.function_schema,
            supported_input_formats=m.supported_input_formats,
            supported_output_formats=m.supported_output_formats,
        )
        for name, m in method_definitions.items()
    }


def function_metadata(fdef: api_pb2.Function, app_id: str) -> api_pb2.FunctionHandleMetadata:
    return api_pb2.FunctionHandleMetadata(
        app_id=app_id,
        function_name=fdef.function_name,
        function_type=fdef.function_type,
        web_url=fdef.web_url,
        is_method=fdef.is_method,
        class_parameter_info=fdef.class_parameter_info,
        method_handle_metadata=method_metadata(fdef.method_definitions),
        function_schema=fdef.function_schema,
        supported_input_formats=fdef.supported_input_formats,
        supported_output_formats=fdef.supported_output_formats,
    )
