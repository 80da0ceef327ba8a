"""Autoscaler knobs through the real client: concurrent and batched inputs, buffer containers, update_autoscaler."""


def test_autoscaler_knobs(shoal):
    out = shoal.python("autoscaling.py").stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["concurrent containers"] == "1", out  # three inputs at once share one container
    assert lines["batch sizes"] == "[4]", out  # four inputs, one batch
    assert lines["buffer kept beside the busy one"] == "True", out
    assert lines["min_containers=1 at run time"] == "True", out
    assert lines["min_containers=0 at run time"] == "True", out
