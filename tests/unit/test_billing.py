"""Modal's billing views of the usage meter, on both store backends."""

import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from modal_proto import api_pb2

from shoal.control import billing
from shoal.control.apps import Apps
from shoal.control.containers import Containers
from shoal.control.errors import InvalidArgument
from shoal.control.functions import Functions
from shoal.control.placement import Allocation, Gpu
from shoal.control.scheduler import Task
from shoal.control.usage import Prices

# Per second: a core 0.001 $, a GiB 0.0001 $, an H100 0.01 $.
PRICES = Prices(cpu_core=3.6, memory_gib=0.36, gpu={"H100": 36.0})
DAY = datetime(2026, 3, 31, tzinfo=UTC).timestamp()  # the last day of a month
HOUR = 3600


async def _app(db, name: str, environment: str = "", tags: dict[str, str] = {}) -> tuple[str, str]:
    app = await Apps(db).create(environment, name, api_pb2.APP_STATE_EPHEMERAL, tags=tags)
    return app.app_id, await Functions(db).precreate(app.app_id, "f")


async def _container(db, app_id: str, function_id: str, start: float, end: float | None, gpus: int = 0) -> None:
    containers = Containers(db)
    task_id = f"ta-{start}-{app_id}"
    held = Allocation("local", 1000, 1024, tuple(Gpu(i, "H100", f"GPU-{i}") for i in range(gpus)))
    await containers.placed(Task(task_id, "rv-1", function_id, app_id, start - 1, held))
    await containers.running(task_id, start)
    if end is not None:
        await containers.finished(task_id, 0, end)


def _cost(seconds: float, gpus: int = 0) -> dict[str, Decimal]:
    costs = {"CPU": seconds * 0.001, "Memory": seconds * 0.0001} | ({"GPU H100": seconds * gpus * 0.01} if gpus else {})
    return {r: Decimal(c).quantize(Decimal("1e-9")) for r, c in sorted(costs.items())}


async def test_a_report_cuts_each_container_at_interval_boundaries(db):
    app_id, fid = await _app(db, "trainer")
    await _container(db, app_id, fid, DAY + 10.5 * HOUR, DAY + 12.25 * HOUR, gpus=2)

    hourly = await billing.report(db, PRICES, DAY + 10 * HOUR, DAY + 13 * HOUR, "h")
    assert [(i.interval_start - DAY) / HOUR for i in hourly] == [10, 11, 12]
    assert [i.cost_by_resource for i in hourly] == [_cost(1800, 2), _cost(3600, 2), _cost(900, 2)]
    assert hourly[0].cost == sum(_cost(1800, 2).values()) and hourly[0].description == "trainer"

    (daily,) = await billing.report(db, PRICES, DAY, DAY + 24 * HOUR, "d")
    assert daily.interval_start == DAY and daily.cost_by_resource == _cost(6300, 2)

    # As in Modal: the start goes back to its interval's beginning, a partial last interval is left out.
    partial = await billing.report(db, PRICES, DAY + 10.3 * HOUR, DAY + 12.2 * HOUR, "h")
    assert [(i.interval_start - DAY) / HOUR for i in partial] == [10, 11]


async def test_a_report_picks_environments_apps_and_tags(db):
    await Apps(db).create_environment("dev")
    main_app, main_f = await _app(db, "serving", tags={"team": "ml", "cost-center": "42"})
    dev_app, dev_f = await _app(db, "experiments", environment="dev", tags={"team": "research"})
    for app_id, fid in ((main_app, main_f), (dev_app, dev_f)):
        await _container(db, app_id, fid, DAY + HOUR, DAY + 2 * HOUR)

    def report(**given):
        return billing.report(db, PRICES, DAY, DAY + 24 * HOUR, "d", **given)

    assert {(i.description, i.environment) for i in await report()} == {("serving", "main"), ("experiments", "dev")}
    assert [i.app_id for i in await report(environments=["dev"])] == [dev_app]
    assert [i.app_id for i in await report(app_ids=[main_app])] == [main_app]
    assert {i.app_id: i.tags for i in await report()} == {main_app: {}, dev_app: {}}
    assert {i.app_id: i.tags for i in await report(tag_names=["team"])} == {
        main_app: {"team": "ml"},
        dev_app: {"team": "research"},
    }
    assert {i.app_id: i.tags for i in await report(tag_names=["*"])}[main_app] == {"team": "ml", "cost-center": "42"}


async def test_a_report_counts_a_running_container_to_now_and_refuses_what_it_cannot_answer(db):
    app_id, fid = await _app(db, "live")
    now = time.time()
    await _container(db, app_id, fid, now - 100, None)
    today = now - now % 86400
    items = await billing.report(db, PRICES, today - 86400, today + 86400, "d")  # two days: 100 s may span midnight
    total = sum(i.cost_by_resource["CPU"] for i in items)
    assert Decimal("0.099") <= total <= Decimal("0.2")  # 100 s and what this test took, not the rest of the day

    with pytest.raises(InvalidArgument, match="'h' .* or 'd'"):
        await billing.report(db, PRICES, DAY, DAY + HOUR, "w")
    with pytest.raises(InvalidArgument, match="at most"):
        await billing.report(db, PRICES, DAY - 400 * 86400, DAY, "h")


async def test_a_summary_covers_its_calendar_month(db):
    await Apps(db).create_environment("dev")
    app_id, fid = await _app(db, "monthly")
    dev_app, dev_f = await _app(db, "elsewhere", environment="dev")
    await _container(db, app_id, fid, DAY + 23 * HOUR, DAY + 25 * HOUR, gpus=1)  # one hour in March, one in April
    await _container(db, dev_app, dev_f, DAY, DAY + HOUR)

    march = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    summary = await billing.summary(db, PRICES, march)
    assert summary.end == DAY + 24 * HOUR  # April 1st
    assert summary.cost_by_resource == {
        r: _cost(HOUR, 1)[r] + _cost(HOUR).get(r, Decimal(0)) for r in ("CPU", "GPU H100", "Memory")
    }
    assert (await billing.summary(db, PRICES, march, environment="dev")).cost_by_resource == _cost(HOUR)
    april = await billing.summary(db, PRICES, DAY + 24 * HOUR)
    assert april.cost_by_resource == _cost(HOUR, 1)

    with pytest.raises(InvalidArgument, match="first of a month"):
        await billing.summary(db, PRICES, DAY)


def test_rates_are_the_prices_per_second():
    rates = billing.rates(PRICES)
    assert rates == {"CPU": Decimal("0.001"), "Memory": Decimal("0.0001"), "GPU H100": Decimal("0.01")}
