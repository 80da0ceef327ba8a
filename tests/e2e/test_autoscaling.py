"""Autoscaler knobs through the real client: concurrent (with target_inputs) and batched inputs,
buffer containers, run-time autoscaler settings and current stats."""


def test_autoscaler_knobs(shoal):
    out = shoal.python("autoscaling.py").stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["concurrent containers"] == "1", out  # three inputs at once share one container
    assert lines["batch sizes"] == "[4]", out  # four inputs, one batch
    assert lines["stats while one container runs 4 and 2 wait"] == "True", out
    assert lines["inputs at once in one container"] == "4", out  # target_inputs=2, max_inputs=4
    assert lines["buffer kept beside the busy one"] == "True", out
    assert lines["declared settings"] == (
        "FunctionAutoscalerSettings(min_containers=0, max_containers=32, scaledown_window=2, buffer_containers=0)"
    ), out
    assert lines["min_containers=1 at run time"] == "True", out
    assert lines["settings at run time"] == (
        "FunctionAutoscalerSettings(min_containers=1, max_containers=3, scaledown_window=2, buffer_containers=0)"
    ), out
    assert lines["min_containers=0 at run time"] == "True", out
