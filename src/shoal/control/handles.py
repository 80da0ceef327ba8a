"""Handle metadata: what the client needs to know to call a function or its methods, and the
function data `modal function info` shows."""

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


def function_metadata(
    fdef: api_pb2.Function, app_id: str, base_function_id: str = ""
) -> api_pb2.FunctionHandleMetadata:
    """`base_function_id`: for a variant (class parameters, with_options), the function it was bound from."""
    return api_pb2.FunctionHandleMetadata(
        app_id=app_id,
        base_function_id=base_function_id,
        function_name=fdef.function_name,
        function_type=fdef.function_type,
        web_url=fdef.web_url,
        # where `Server.get_url()` looks
        _experimental_flash_urls=[fdef.web_url] if fdef.is_server and fdef.web_url else [],
        is_method=fdef.is_method,
        class_parameter_info=fdef.class_parameter_info,
        method_handle_metadata=method_metadata(fdef.method_definitions),
        function_schema=fdef.function_schema,
        supported_input_formats=fdef.supported_input_formats,
        supported_output_formats=fdef.supported_output_formats,
    )


def function_data(fdef: api_pb2.Function, gpu_choices: tuple[str, ...] = ()) -> api_pb2.FunctionData:
    """The settings all of a function's definitions share, and one definition per GPU it may run on
    (`gpu=` as a list: "H100:2", ... in order of preference)."""
    ranked = []
    for rank, choice in enumerate(gpu_choices or ("",)):
        definition = api_pb2.Function()
        definition.CopyFrom(fdef)
        if choice:
            gpu_type, _, count = choice.rpartition(":")
            definition.resources.gpu_config.gpu_type, definition.resources.gpu_config.count = gpu_type, int(count)
        ranked.append(api_pb2.FunctionData.RankedFunction(rank=rank, function=definition))
    return api_pb2.FunctionData(
        module_name=fdef.module_name,
        function_name=fdef.function_name,
        function_type=fdef.function_type,
        warm_pool_size=fdef.warm_pool_size,
        concurrency_limit=fdef.concurrency_limit,
        task_idle_timeout_secs=fdef.task_idle_timeout_secs,
        autoscaler_settings=fdef.autoscaler_settings,
        timeout_secs=fdef.timeout_secs,
        startup_timeout_secs=fdef.startup_timeout_secs,
        web_url=fdef.web_url,
        web_url_info=fdef.web_url_info,
        webhook_config=fdef.webhook_config,
        is_class=fdef.is_class,
        class_parameter_info=fdef.class_parameter_info,
        is_method=fdef.is_method,
        method_definitions=fdef.method_definitions,
        method_definitions_set=fdef.method_definitions_set,
        function_schema=fdef.function_schema,
        untrusted=fdef.untrusted,
        supported_input_formats=fdef.supported_input_formats,
        supported_output_formats=fdef.supported_output_formats,
        _experimental_group_size=fdef._experimental_group_size,
        _experimental_fabric_size=fdef._experimental_fabric_size,
        ranked_functions=ranked,
    )
