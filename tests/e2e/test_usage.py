"""Usage metering against container lifetimes measured by the kernel, not by shoal.

A watcher finds each container's first process on the host (the init of a pid
namespace whose environment names a MODAL_TASK_ID), takes its start time from
/proc/<pid>/stat and its exit time from a pidfd becoming readable. `shoal usage`
must then meter each container's requests for that lifetime, within 2%: each lives
about 20 s, so the tens of milliseconds shoal takes to notice a start or an exit fit.

The shoal builds its client package when its first containers start, so they are
placed seconds before their processes run: time a container must not be billed for.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import running_shoal
from metering import ContainerWatch, check_billed_above_the_reservation, wait_unlisted

from shoal.control.usage import Prices

# What tests/e2e/apps/usage.py requests: cores, MiB, GPU type.
REQUESTS = {"cpu_held": (1.0, 768, ""), "gpu_held": (1.0, 2048, "A10G")}


@pytest.fixture(scope="module")
def cold_shoal():
    with running_shoal(build_client=True) as instance:
        yield instance


def test_usage_matches_measured_container_lifetimes(cold_shoal):
    with ContainerWatch() as watch:
        out = cold_shoal.modal("run", "usage.py").stdout
        task_ids = dict(line.split(": ", 1) for line in out.splitlines() if ": ta-" in line)
        assert task_ids.keys() == REQUESTS.keys(), out
        lifetimes = {name: watch.lifetime(task_id) for name, task_id in task_ids.items()}
        started = datetime.fromtimestamp(min(watch.started[t] for t in task_ids.values()), UTC)
    wait_unlisted(cold_shoal, "e2e-usage")

    report = json.loads(cold_shoal.shoal("usage", "--by", "function", "--json").stdout)
    rows = {r["key"].removeprefix("e2e-usage."): r for r in report["rows"] if r["key"].startswith("e2e-usage.")}
    assert rows.keys() == REQUESTS.keys()
    for name, (cores, memory_mib, gpu) in REQUESTS.items():
        row, lifetime = rows[name], lifetimes[name]
        print(f"{name}: measured {lifetime:.3f} s, metered {row['seconds']:.3f} s")
        assert row["containers"] == 1
        assert row["cpu_core_seconds"] == pytest.approx(cores * lifetime, rel=0.02)
        assert row["memory_gib_seconds"] == pytest.approx(memory_mib / 1024 * lifetime, rel=0.02)
        assert row["gpu_seconds"] == ({gpu: pytest.approx(lifetime, rel=0.02)} if gpu else {})

    # Modal's own billing views read the same meter, at the configured prices: per day, per app, with its tags.
    prices = Prices()
    core_seconds = sum(cores * lifetimes[name] for name, (cores, _, _) in REQUESTS.items())
    gib_seconds = sum(mib / 1024 * lifetimes[name] for name, (_, mib, _) in REQUESTS.items())
    expected = {
        "CPU": core_seconds * prices.cpu_core / 3600,
        "Memory": gib_seconds * prices.memory_gib / 3600,
        "GPU A10G": lifetimes["gpu_held"] * prices.gpu["A10G"] / 3600,
    }
    day = started.date()
    billing = json.loads(
        cold_shoal.modal(
            "billing", "report", "--start", str(day - timedelta(days=1)), "--end", str(day + timedelta(days=2)),
            "--show-resources", "--tag-names", "team,run", "--json",
        ).stdout
    )  # fmt: skip
    ours = [row for row in billing if row["description"] == "e2e-usage"]
    assert {row["environment"] for row in ours} == {"main"}
    assert all(json.loads(row["tags"]) == {"team": "metering", "run": "e2e"} for row in ours)
    billed = {resource: sum(float(r["cost"]) for r in ours if r["resource"] == resource) for resource in expected}
    for resource, cost in expected.items():
        assert billed[resource] == pytest.approx(cost, rel=0.02), resource
    summary = json.loads(cold_shoal.modal("billing", "summary", "--for", started.strftime("%Y-%m"), "--json").stdout)
    assert float(summary["metered_cost_breakdown"]["gpu_a10g"]) >= billed["GPU A10G"]
    assert "Workspace: shoal" in cold_shoal.modal("token", "info").stdout


def test_usage_bills_cpu_and_memory_used_above_the_reservation(cold_shoal):
    check_billed_above_the_reservation(cold_shoal)
