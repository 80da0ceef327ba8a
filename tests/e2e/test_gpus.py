"""GPU requests: placed on the declared GPUs, fallbacks in order, the impossible refused at once."""


def test_gpu_functions_see_only_their_gpus(shoal):
    out = shoal.modal("run", "gpus.py").stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["one_h100"] in ("GPU-fake-0-H100", "GPU-fake-1-H100")
    assert sorted(lines["two_h100"].split(",")) == ["GPU-fake-0-H100", "GPU-fake-1-H100"]
    assert lines["fallback"] == "GPU-fake-2-A10G"  # no B200 in the pool: the second choice
    assert lines["no_gpu"] == "[]"
    assert lines["a10g_overlap"] == "False", "one A10G: the second input waited for the first"
    assert "No worker can ever run a container with gpu=B200" in lines["impossible"]
    assert "H100:2" in lines["impossible"] and "A10G:1" in lines["impossible"]
