from modal_proto import api_pb2

from shoal.control.handles import function_data


def test_function_data_has_the_shared_settings_and_one_definition_per_gpu_choice():
    fdef = api_pb2.Function(function_name="f", timeout_secs=120, startup_timeout_secs=30, untrusted=True)
    fdef.resources.milli_cpu = 500
    data = function_data(fdef, ("H100:2", "A10G:1"))
    assert (data.function_name, data.timeout_secs, data.startup_timeout_secs, data.untrusted) == ("f", 120, 30, True)
    gpus = [
        (r.rank, r.function.resources.gpu_config.gpu_type, r.function.resources.gpu_config.count)
        for r in data.ranked_functions
    ]
    assert gpus == [(0, "H100", 2), (1, "A10G", 1)]
    assert all(r.function.resources.milli_cpu == 500 for r in data.ranked_functions)
    (only,) = function_data(fdef).ranked_functions
    assert only.function == fdef
