"""GPU requests: placed on the declared GPUs, fallbacks in order, the impossible refused at once; metered."""

import json

import pytest


def test_gpu_functions_see_only_their_gpus(shoal):
    out = shoal.modal("run", "gpus.py").stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["one_h100"] in ("GPU-fake-0-H100", "GPU-fake-1-H100")
    assert sorted(lines["two_h100"].split(",")) == ["GPU-fake-0-H100", "GPU-fake-1-H100"]
    assert lines["fallback"] == "GPU-fake-2-A10G"  # no B200 in the pool: the second choice
    assert lines["no_gpu"] == "[]"
    assert lines["function with_options(gpu='A10G')"] == "GPU-fake-2-A10G"
    assert lines["class"] == "[]"
    assert lines["class with_options(gpu='A10G')"] == "GPU-fake-2-A10G"
    assert lines["a10g_overlap"] == "False", "one A10G: the second input waited for the first"
    assert "No worker can ever run a container with gpu=B200" in lines["impossible"]
    assert "H100:2" in lines["impossible"] and "A10G:1" in lines["impossible"]


def test_usage_meters_gpu_containers(shoal):
    shoal.modal("run", "gpus.py")
    by_gpu = json.loads(shoal.shoal("usage", "--by", "gpu", "--json").stdout)
    rows = {r["key"]: r for r in by_gpu["rows"]}
    assert rows["H100"]["gpu_seconds"]["H100"] > 0 and rows["A10G"]["gpu_seconds"]["A10G"] > 0
    # two_h100 held both H100s for its whole life: twice its container time
    by_function = json.loads(shoal.shoal("usage", "--by", "function", "--json").stdout)
    two = next(r for r in by_function["rows"] if r["key"] == "e2e-gpus.two_h100")
    assert two["gpu_seconds"]["H100"] == pytest.approx(2 * two["seconds"])
    assert {v["function"] for v in by_function["gpu_verdicts"]} >= {"e2e-gpus.one_h100", "e2e-gpus.hold_a10g"}
    table = shoal.shoal("usage", "--since", "1h").stdout
    assert "e2e-gpus" in table and "Cheaper" in table
