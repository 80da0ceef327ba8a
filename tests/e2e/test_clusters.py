"""Clustered functions (@modal.clustered): started whole, every rank given the input, rank 0
answering, the ranks reaching each other at their cluster addresses."""

import json

from conftest import free_ports


def test_a_cluster_runs_each_input_on_every_rank_and_rank_0_answers(shoal):
    out = shoal.modal("run", "clustered.py", "--port", str(free_ports())).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)

    gather = json.loads(lines["gather"])
    reports = gather["reports"]
    assert [r["rank"] for r in reports] == [0, 1, 2]
    assert [r["x"] for r in reports] == [7, 7, 7]  # the input went to every rank
    assert [r["task"] for r in reports] == gather["ids"]  # container ids by rank (ClusterGet)
    assert len(set(gather["ids"])) == 3 and gather["cluster"].startswith("cu-")
    # containers share the machine's network: every rank's address is the machine's
    assert gather["ips"] == ["::ffff:127.0.0.1"] * 3 and gather["ipv4"] == ["127.0.0.1"] * 3
    assert all(r["i6pn"] == "::ffff:127.0.0.1" for r in reports)
    assert [r["hostname"] for r in reports] == gather["ids"]  # a host name of its own, as NCCL needs

    again = json.loads(lines["again"])
    assert again["cluster"] == gather["cluster"]  # a warm cluster takes the next input
    assert [r["x"] for r in again["reports"]] == [8, 8, 8]

    gpu_ranks = json.loads(lines["gpu_ranks"])
    assert sorted(r["gpus"] for r in gpu_ranks) == ["GPU-fake-0-H100", "GPU-fake-1-H100"]  # one H100 each

    assert json.loads(lines["alone"]) == [0, 1]
    assert json.loads(lines["class"]) == [0, 2]
    assert lines["i6pn"] == "::ffff:127.0.0.1"  # i6pn=True without a cluster: the name resolves too
    assert lines["rank_one_fails"] == "ValueError: rank 1 gave up"
    assert "No worker can ever run a cluster of 2 containers, each with gpu=A10G" in lines["too_big"]


def test_modal_function_info_shows_a_functions_cluster_size(shoal):
    shoal.modal("deploy", "clustered.py")
    info = shoal.modal("function", "info", "e2e-clustered/gather").stdout
    assert "Clustering:" in info and "Cluster Size: 3" in " ".join(info.split())
