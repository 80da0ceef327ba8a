"""Dicts and queues end to end: shared between a script and containers, blocking gets woken by
puts, ephemeral ones, partitions past their TTL, and `modal dict` / `modal queue`."""

import json


def test_a_container_takes_jobs_from_a_queue_and_writes_a_dict(shoal):
    out = json.loads(shoal.python("dicts_queues.py", "main").stdout.strip().splitlines()[-1])
    assert out["done"] == 20
    assert out["results"] == {f"job-{i}": i * i for i in range(20)}
    assert out["len"] == 20
    assert out["waited"] == ["a", "b"]  # a get blocked in a container, woken by the script's put
    assert out["left"] == 0
    assert out["put_if_absent"] == [False, True]
    assert out["ephemeral_dict"] == [["k", [1, 2]], ["n", 4]]
    assert out["iterated"] == [1, 2, 3]  # iterating leaves the items in place
    assert out["popped"] == [[1, 2], 1, 2]


def test_a_queue_partition_is_gone_once_its_ttl_has_passed(shoal):
    out = json.loads(shoal.python("dicts_queues.py", "expiry").stdout.strip().splitlines()[-1])
    assert out == {"len": 0, "get": None, "iterated": [], "total": 1, "kept": [4]}
    peek = ("queue", "peek", "e2e-peeked-queue", "5", "--partition")
    assert shoal.modal(*peek, "p").stdout.strip() == ""
    assert shoal.modal(*peek, "kept").stdout.strip() == "4"


def test_dict_and_queue_cli(shoal):
    shoal.modal("dict", "create", "e2e-cli-dict")
    shoal.modal("dict", "create", "e2e-cli-dict")  # a no-op when it exists, as the client has it
    assert "e2e-cli-dict" in shoal.modal("dict", "list").stdout
    assert shoal.modal("dict", "items", "e2e-cli-dict", "--json").stdout.strip() == "[]"
    shoal.modal("dict", "delete", "--yes", "e2e-cli-dict")
    missing = shoal.modal("dict", "items", "e2e-cli-dict", check=False)
    assert missing.returncode != 0 and "not found" in missing.stdout + missing.stderr
    shoal.modal("queue", "create", "e2e-cli-queue")
    assert shoal.modal("queue", "len", "e2e-cli-queue").stdout.strip() == "0"
    shoal.modal("queue", "delete", "--yes", "e2e-cli-queue")
    assert "e2e-cli-queue" not in shoal.modal("queue", "list").stdout


def test_dicts_and_queues_survive_a_restart(shoal):
    shoal.python("dicts_queues.py", "keep")
    shoal.down()
    shoal.up()
    assert shoal.modal("dict", "get", "e2e-kept-dict", "k").stdout.strip() == "v"
    assert shoal.modal("queue", "len", "e2e-kept-queue").stdout.strip() == "1"
