"""The store's interface on both backends: SQLite and PostgreSQL."""

import asyncio
import os
import time

import pytest
from alembic import command
from modal_proto import api_pb2
from postgres import fresh_database
from sqlalchemy import insert, select, text

from shoal.control.apps import Apps
from shoal.control.calls import Calls
from shoal.control.containers import Containers
from shoal.control.deployments import Deployments
from shoal.control.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from shoal.control.functions import Binding, Functions, retry_policy
from shoal.control.placement import Allocation, Gpu
from shoal.control.scheduler import Task, autoscaling
from shoal.control.tokens import Tokens
from shoal.control.usage import Prices, amounts, metered, report, seconds_within
from shoal.store import migrations, schema
from shoal.store.database import Database, ValueRejected, database_url
from shoal.worker.agent import Load
from shoal.worker.excess import GIB, Excess


def test_database_url_forms():
    assert database_url("/x/shoal.db") == "sqlite:////x/shoal.db"
    assert database_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"


async def test_tokens_verify(db):
    tokens = Tokens(db)
    token_id, secret = await tokens.create()
    await Tokens(db).verify(token_id, secret)
    with pytest.raises(Unauthenticated):
        await Tokens(db).verify(token_id, secret + "x")
    with pytest.raises(Unauthenticated):
        await Tokens(db).verify("ak-unknown", secret)


async def test_apps_lifecycle(db):
    apps = Apps(db)
    app = await apps.create("", "my app", api_pb2.APP_STATE_EPHEMERAL)
    assert app.environment == "main"
    await apps.publish(app.app_id, "named", api_pb2.APP_STATE_DEPLOYED)
    assert (await apps.by_name("main", "named")).app_id == app.app_id
    await apps.mark_stopped(app.app_id)
    assert await apps.by_name("main", "named") is None
    assert [a.app_id for a in await apps.in_environment("main")] == [app.app_id]
    with pytest.raises(NotFound):
        await apps.get("ap-missing")
    with pytest.raises(NotFound):
        await apps.create("staging", "x", 0)


async def test_app_tags_are_kept_replaced_and_checked(db):
    apps = Apps(db)
    app = await apps.create("", "tagged", api_pb2.APP_STATE_EPHEMERAL, tags={"team": "ml"})
    assert (await apps.get(app.app_id)).tags == {"team": "ml"}
    await apps.set_tags(app.app_id, {"team": "infra", "tier": "gold"})
    await apps.publish(app.app_id, "tagged", api_pb2.APP_STATE_DEPLOYED)  # a deploy naming no tags keeps them
    assert (await apps.get(app.app_id)).tags == {"team": "infra", "tier": "gold"}
    await apps.publish(app.app_id, "tagged", api_pb2.APP_STATE_DEPLOYED, {"team": "serving"})
    assert (await apps.get(app.app_id)).tags == {"team": "serving"}
    with pytest.raises(InvalidArgument, match="tag value 'a b'"):
        await apps.set_tags(app.app_id, {"team": "a b"})
    with pytest.raises(NotFound):
        await apps.set_tags("ap-missing", {})


async def test_apps_take_only_the_states_and_names_a_client_gives(db):
    apps = Apps(db)
    with pytest.raises(InvalidArgument, match="APP_STATE_STOPPED"):
        await apps.create("", "x", api_pb2.APP_STATE_STOPPED)
    with pytest.raises(InvalidArgument, match="state 999"):
        await apps.create("", "x", 999)
    app = await apps.create("", "x", 0)
    assert app.state == api_pb2.APP_STATE_EPHEMERAL
    with pytest.raises(InvalidArgument, match="APP_STATE_DISABLED"):
        await apps.publish(app.app_id, "x", api_pb2.APP_STATE_DISABLED)
    for name in ("a b", "a" * 65, "ap-" + "a" * 22, ""):
        with pytest.raises(InvalidArgument, match="Invalid app name"):
            await apps.publish(app.app_id, name, api_pb2.APP_STATE_DEPLOYED)
    # `modal run` publishes whatever name App() was given: only deployed apps are looked up by name.
    assert (await apps.publish(app.app_id, "my app", api_pb2.APP_STATE_EPHEMERAL)).name == "my app"


async def test_the_default_environment_cannot_be_deleted_by_any_name(db):
    apps = Apps(db)
    app = await apps.create("", "running", api_pb2.APP_STATE_EPHEMERAL)
    for name in ("main", ""):
        with pytest.raises(InvalidArgument, match="cannot be deleted"):
            await apps.delete_environment(name)
    assert (await apps.get(app.app_id)).state == api_pb2.APP_STATE_EPHEMERAL


async def test_transactions_that_read_then_write_do_not_race(db):
    """Many at once, as replicas or concurrent requests send them: one environment is made, the
    rest are told it exists; versions are numbered one after another."""
    apps, functions = Apps(db), Functions(db)
    outcomes = await asyncio.gather(*(apps.create_environment("racing") for _ in range(8)), return_exceptions=True)
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if o is not None), outcomes
    deployments = Deployments(db, functions)
    app = await apps.create("", "app", api_pb2.APP_STATE_INITIALIZING)
    await deployments.publish(app.app_id, {}, "ak-1", "1.6.4", "", b"")
    rollovers = await asyncio.gather(*(deployments.rollover(app.app_id, "ak-1", "1.6.4") for _ in range(8)))
    assert sorted(v.version for v in rollovers) == list(range(2, 10))


async def test_a_value_the_database_cannot_hold_is_the_callers_error(db):
    apps = Apps(db)
    with pytest.raises((ValueRejected, NotFound)):  # PostgreSQL refuses a NUL; SQLite finds no such app
        await apps.get("ap-\x00")
    if not db.is_sqlite:  # which keeps strings of any length
        app = await apps.create("", "long", api_pb2.APP_STATE_EPHEMERAL)
        with pytest.raises(ValueRejected, match="too long"):
            await apps.publish(app.app_id, "n" * 200, api_pb2.APP_STATE_EPHEMERAL)


async def test_function_revisions_persist(db):
    functions = Functions(db)
    fid = await functions.precreate("ap-1", "f")
    fdef = api_pb2.Function(function_name="f", retry_policy=api_pb2.FunctionRetryPolicy(retries=2))
    revision = await functions.create("ap-1", fdef, fid)
    again = await Functions(db).latest(fid)
    assert again == revision
    assert retry_policy(again).retries == 2
    bound = await functions.bind(fid, b"params")
    fresh = Functions(db)
    assert await fresh.bind(fid, b"params") == bound  # the same parameters, the same id
    bound_revision = await fresh.bound_revision(bound, revision)
    assert bound_revision.params == b"params" and bound_revision.definition == fdef
    assert await Functions(db).revision(bound_revision.revision_id) == bound_revision


async def test_a_class_variant_runs_its_options_over_the_class_definition(db):
    functions = Functions(db)
    fid = await functions.precreate("ap-1", "Model.*")
    declared = api_pb2.Function(
        function_name="Model.*",
        resources=api_pb2.Resources(milli_cpu=500, gpu_config=api_pb2.GPUConfig(gpu_type="A10G", count=1)),
        autoscaler_settings=api_pb2.AutoscalerSettings(max_containers=2, scaledown_window=60),
        secret_ids=["st-declared"],
        max_concurrent_inputs=2,
    )
    revision = await functions.create("ap-1", declared, fid, ("A10G:1", "L4:1"))
    options = api_pb2.FunctionOptions(
        resources=api_pb2.Resources(gpu_config=api_pb2.GPUConfig(gpu_type="H100", count=2)),
        concurrency_limit=8,
        timeout_secs=30,
        secret_ids=["st-given"],
        replace_secret_ids=True,
        max_concurrent_inputs=10,
        target_concurrent_inputs=4,
    )
    variant = await functions.bind(fid, b"", options)
    plain = await functions.bind(fid, b"")
    assert variant != plain
    assert await Functions(db).bind(fid, b"", options) == variant  # the same options, the same id
    assert await Functions(db).bind(fid, b"") == plain

    ran = await Functions(db).bound_revision(variant, revision)
    fdef = ran.definition
    assert (fdef.resources.milli_cpu, fdef.resources.gpu_config.gpu_type, fdef.resources.gpu_config.count) == (
        500,
        "H100",
        2,
    )
    assert ran.gpu_choices == ()  # the option's GPU, not the class's fallbacks
    assert autoscaling(fdef).max_containers == 8 and autoscaling(fdef).scaledown_window == 60
    assert (fdef.timeout_secs, list(fdef.secret_ids)) == (30, ["st-given"])
    assert (fdef.max_concurrent_inputs, fdef.target_concurrent_inputs) == (10, 4)
    unchanged = await Functions(db).bound_revision(plain, revision)
    assert unchanged.definition == declared and unchanged.gpu_choices == ("A10G:1", "L4:1")

    # `modal function variants` pages through them newest first.
    third = await functions.bind(fid, b"third")
    first_page = await Functions(db).variants(fid, 2)
    assert [v[0] for v in first_page] == [third, plain]
    assert first_page[1][1] == Binding(fid, b"", b"")
    last_id, _, created_at = first_page[-1]
    rest = await Functions(db).variants(fid, 2, before=(created_at, last_id))
    assert [(v[0], api_pb2.FunctionOptions.FromString(v[1].options)) for v in rest] == [(variant, options)]


@pytest.mark.parametrize(
    "definition, refusal",
    [
        (
            api_pb2.Function(
                cloud_bucket_mounts=[
                    api_pb2.CloudBucketMount(bucket_name="b", oidc_auth_role_arn="arn:aws:iam::1:role/r")
                ]
            ),
            "'f' uses what shoal does not support yet: a CloudBucketMount with oidc_auth_role_arn",
        ),
        (
            api_pb2.Function(
                _experimental_group_size=2,
                webhook_config=api_pb2.WebhookConfig(type=api_pb2.WEBHOOK_TYPE_FUNCTION),
            ),
            "'f' is clustered and a web endpoint",
        ),
    ],
)
async def test_functions_using_what_shoal_lacks_are_refused(db, definition, refusal):
    definition = api_pb2.Function(function_name="f", **{f.name: v for f, v in definition.ListFields()})
    with pytest.raises(InvalidArgument, match=refusal):
        await Functions(db).create("ap-1", definition)


async def test_the_same_definition_is_the_same_revision(db):
    functions = Functions(db)
    fid = await functions.precreate("ap-1", "f")
    one = await functions.create("ap-1", api_pb2.Function(function_name="f", mount_ids=["mo-a", "mo-b"]), fid)
    # The client loads mounts concurrently, so their order changes between deploys of the same code.
    two = await functions.create("ap-1", api_pb2.Function(function_name="f", mount_ids=["mo-b", "mo-a"]), fid)
    other = await functions.create("ap-1", api_pb2.Function(function_name="f", mount_ids=["mo-c"]), fid)
    assert one.revision_id == two.revision_id != other.revision_id


async def test_versions_switch_atomically_and_survive_a_restart(db):
    apps, functions = Apps(db), Functions(db)
    deployments = Deployments(db, functions)
    app = await apps.create("", "app", api_pb2.APP_STATE_INITIALIZING)
    fid = await functions.precreate(app.app_id, "f")

    async def deploy(body: str):
        await functions.create(app.app_id, api_pb2.Function(function_name="f", module_name=body), fid)
        return await deployments.publish(app.app_id, {"f": fid}, "ak-1", "1.6.4", "", b"")

    v1 = await deploy("one")
    assert v1.version == 1 and v1.previous_version is None
    assert await deploy("one") is None  # identical code makes no version
    v2 = await deploy("two")
    assert (v2.version, v2.previous_version) == (2, 1)
    assert (await deployments.resolve(fid)).definition.module_name == "two"

    # A definition created but not yet published does not change what calls run.
    await functions.create(app.app_id, api_pb2.Function(function_name="f", module_name="staged"), fid)
    assert (await deployments.resolve(fid)).definition.module_name == "two"

    restarted = Deployments(db, Functions(db))
    assert (await restarted.resolve(fid)).definition.module_name == "two"
    v3 = await restarted.rollback(app.app_id, -1, "ak-2", "1.6.4")
    assert (v3.version, v3.rollback_version, v3.previous_version) == (3, 1, 2)
    assert (await restarted.resolve(fid)).revision_id == v1.revisions[fid]
    assert [v.version for v in await restarted.history(app.app_id)] == [3, 2, 1]
    with pytest.raises(NotFound):
        await restarted.rollback(app.app_id, 9, "ak-2", "1.6.4")

    # A version without the function: calls to it fail instead of running old code.
    await restarted.publish(app.app_id, {}, "ak-1", "1.6.4", "", b"")
    with pytest.raises(NotFound, match="not in the live version"):
        await restarted.resolve(fid)


async def test_a_function_pinned_to_a_version_runs_it_whatever_is_live(db):
    apps, functions = Apps(db), Functions(db)
    deployments = Deployments(db, functions)
    app = await apps.create("", "app", api_pb2.APP_STATE_INITIALIZING)
    fid = await functions.precreate(app.app_id, "f")
    for body in ("one", "two"):
        await functions.create(app.app_id, api_pb2.Function(function_name="f", module_name=body), fid)
        await deployments.publish(app.app_id, {"f": fid}, "ak-1", "1.6.4", "", b"")

    pinned = await functions.bind(fid, b"", version=1)
    assert await functions.bind(fid, b"", version=1) == pinned != await functions.bind(fid, b"", version=2)
    assert (await deployments.resolve(pinned)).definition.module_name == "one"
    assert (await deployments.resolve(fid)).definition.module_name == "two"
    # a class bound to parameters on top of a pinned version runs that version too
    bound = await functions.bind(pinned, b"params")
    assert (await deployments.resolve(bound)).definition.module_name == "one"
    assert [v[0] for v in await functions.variants(fid, 10)] == []  # pinned versions are not variants

    restarted = Deployments(db, Functions(db))
    assert (await restarted.resolve(pinned)).definition.module_name == "one"
    await restarted.publish(app.app_id, {}, "ak-1", "1.6.4", "", b"")  # v3 has no f: v1 still has
    assert (await restarted.resolve(pinned)).definition.module_name == "one"
    with pytest.raises(NotFound, match="not in version v3"):
        await restarted.resolve(await restarted.functions.bind(fid, b"", version=3))


async def test_calls_survive_restart(db):
    calls = Calls(db, lambda fid: api_pb2.FunctionRetryPolicy())
    inp = api_pb2.FunctionInput(args=b"a")
    call, inputs = await calls.create("fu-1", api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC, [(0, inp), (1, inp)])
    import asyncio

    taken = await calls.next_inputs("fu-1", "ta-1", 1, 0, asyncio.Event())
    assert [i.idx for i in taken] == [0]
    ok = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS, data=b"r")
    await calls.put_output("ta-1", taken[0].input_id, ok, 0)
    await calls.flush()  # as `shoal down` does

    # A new process: the finished output is still there, the unfinished input is queued again.
    recovered = Calls(db, lambda fid: api_pb2.FunctionRetryPolicy())
    await recovered.recover()
    outputs, last, unfinished = await recovered.get_outputs(
        call.call_id, last_entry_id="0-0", timeout=0, clear_on_success=False
    )
    assert [o.result.data for o in outputs] == [b"r"]
    assert [i.idx for i in recovered.queue("fu-1").pending] == [1]


async def test_failed_input_is_retried_then_reported(db):
    policy = api_pb2.FunctionRetryPolicy(retries=1, initial_delay_ms=10, backoff_coefficient=1.0)
    calls = Calls(db, lambda fid: policy)
    call, _ = await calls.create("fu-1", 0, [(0, api_pb2.FunctionInput())])
    import asyncio

    failure = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception="boom")
    first = await calls.next_inputs("fu-1", "ta-1", 1, 0, asyncio.Event())
    await calls.put_output("ta-1", first[0].input_id, failure, 0)
    assert call.outputs == []
    second = await calls.next_inputs("fu-1", "ta-1", 1, 2, asyncio.Event())
    assert second[0].retry_count == 1
    await calls.put_output("ta-1", second[0].input_id, failure, 0)
    outputs, _, unfinished = await calls.get_outputs(call.call_id, last_entry_id="", timeout=0, clear_on_success=False)
    assert outputs[0].result.exception == "boom" and unfinished == 0
    await calls.flush()


async def test_finished_call_is_read_from_the_store_after_restart(db):
    calls = Calls(db, lambda fid: api_pb2.FunctionRetryPolicy())
    call, _ = await calls.create("fu-1", api_pb2.FUNCTION_CALL_INVOCATION_TYPE_ASYNC, [(0, api_pb2.FunctionInput())])
    [inp] = await calls.next_inputs("fu-1", "ta-1", 1, 0, asyncio.Event())
    await calls.put_output("ta-1", inp.input_id, api_pb2.GenericResult(data=b"done"), 0)
    await calls.flush()

    fresh = Calls(db, lambda fid: api_pb2.FunctionRetryPolicy())
    await fresh.recover()
    assert call.call_id not in fresh.calls  # nothing to redo, so nothing loaded at start-up
    outputs, _, unfinished = await fresh.get_outputs(
        call.call_id, last_entry_id="0-0", timeout=0, clear_on_success=False
    )
    assert [o.result.data for o in outputs] == [b"done"] and unfinished == 0
    with pytest.raises(NotFound):
        await fresh.get("fc-missing")


async def test_usage_meters_each_container_for_what_it_held(db):
    apps, functions, containers = Apps(db), Functions(db), Containers(db)
    app = await apps.create("", "metered", api_pb2.APP_STATE_EPHEMERAL)
    await apps.publish(app.app_id, "metered", api_pb2.APP_STATE_EPHEMERAL)
    fid = await functions.precreate(app.app_id, "train")
    t0 = 1_000_000.0
    gpu = Allocation("local", 2000, 4096, (Gpu(0, "H100", "GPU-0"), Gpu(1, "H100", "GPU-1")))
    await containers.placed(Task("ta-gpu", "rv-1", fid, app.app_id, t0 - 3, gpu))
    await containers.running("ta-gpu", t0)
    await containers.placed(Task("ta-cpu", "rv-1", fid, app.app_id, t0 + 10, Allocation("local", 0, 0)))
    await containers.running("ta-cpu", t0 + 10)
    cpu_end = t0 + 30
    await containers.finished("ta-cpu", 0, cpu_end)

    until = cpu_end + 5  # the GPU container still runs
    result = await report(db, Prices(), since=0, by="function", until=until)
    (row,) = result.rows
    gpu_seconds, cpu_seconds = until - t0, cpu_end - (t0 + 10)
    assert row.key == "metered.train" and row.containers == 2
    assert row.seconds == pytest.approx(gpu_seconds + cpu_seconds)
    assert row.gpu_seconds == {"H100": pytest.approx(2 * gpu_seconds)}
    # requests are metered as asked; a container without any, at the defaults (0.125 cores, 128 MiB)
    assert row.cpu_core_seconds == pytest.approx(2 * gpu_seconds + 0.125 * cpu_seconds)
    assert row.memory_gib_seconds == pytest.approx(4 * gpu_seconds + 0.125 * cpu_seconds)

    # Two H100s held the whole window: a dedicated pair would be busy all the time, and cheaper.
    (verdict,) = result.gpu_verdicts
    assert verdict.utilisation == pytest.approx(1.0) and verdict.dedicated_is_cheaper
    later = await report(db, Prices(), since=until - 1, by="gpu", until=until)
    assert {r.key: r.seconds for r in later.rows} == {"H100": pytest.approx(1.0)}


def _load(excess: dict[str, Excess], cores: float = 1.0, memory: int = GIB) -> Load:
    """A worker's readings of these containers."""
    return Load(0.5, dict.fromkeys(excess, cores), dict.fromkeys(excess, memory), excess)


async def test_usage_adds_what_containers_used_above_their_reservations(db):
    """Modal bills CPU and memory at the greater of the reservation and the actual use."""
    apps, functions, containers = Apps(db), Functions(db), Containers(db)
    app = await apps.create("", "metered", api_pb2.APP_STATE_EPHEMERAL)
    fid = await functions.precreate(app.app_id, "f")
    for task_id in ("ta-done", "ta-running"):
        await containers.placed(Task(task_id, "rv-1", fid, app.app_id, 100.0, Allocation("local", 1000, 1024)))
        await containers.running(task_id, 100.0)
    # What the workers said while both ran, then ta-done's exit with its final figures.
    await containers.note_usage(_load({"ta-done": Excess(5.0, 1.0), "ta-running": Excess(2.0, 0.0)}), 110.0)
    await containers.finished("ta-done", 0, 120.0, excess=Excess(8.0, 3.0))
    late = {"ta-done": Excess(6.0, 1.0), "ta-running": Excess(4.0, 2.0)}  # ta-done's comes after its exit
    await containers.note_usage(_load(late), 121.0)

    async def used(task_id: str, since: float, until: float) -> tuple[float, float]:
        [row] = [r for r in await metered(db, since, until) if r.task_id == task_id]
        by_resource = amounts(row, seconds_within(row, since, until))
        return by_resource["CPU"], by_resource["Memory"]

    assert await used("ta-done", 0, 200.0) == (pytest.approx(20 + 8.0), pytest.approx(20 + 3.0))
    # A report of part of its life gets that part of the excess.
    assert await used("ta-done", 115.0, 200.0) == (pytest.approx(5 + 2.0), pytest.approx(5 + 0.75))

    # A lost worker says nothing at the end: what it said last stands.
    await containers.finished("ta-running", -1, 130.0)
    assert await used("ta-running", 0, 200.0) == (pytest.approx(30 + 4.0), pytest.approx(30 + 2.0))
    [row] = (await report(db, Prices(), since=0, by="app", until=200.0)).rows
    assert (row.cpu_core_seconds, row.memory_gib_seconds) == (pytest.approx(28 + 34), pytest.approx(23 + 32))
    assert row.cost == pytest.approx((28 + 34) * Prices().cpu_core / 3600 + (23 + 32) * Prices().memory_gib / 3600)


async def test_a_reading_that_waited_for_the_store_past_the_containers_exit_is_dropped(db):
    apps, functions, containers = Apps(db), Functions(db), Containers(db)
    app = await apps.create("", "metered", api_pb2.APP_STATE_EPHEMERAL)
    fid = await functions.precreate(app.app_id, "f")
    await containers.placed(Task("ta-1", "rv-1", fid, app.app_id, 100.0, Allocation("local", 1000, 1024)))
    await containers.running("ta-1", 100.0)
    async with db.tx():  # the store is busy: the reading, then the exit, wait for it in turn
        reading = asyncio.create_task(containers.note_usage(_load({"ta-1": Excess(5.0, 1.0)}), 130.0))
        await asyncio.sleep(0.05)
        exited = asyncio.create_task(containers.finished("ta-1", 0, 120.0, excess=Excess(8.0, 3.0)))
        await asyncio.sleep(0.05)
    await reading
    await exited
    [row] = await metered(db, 0, 200.0)
    assert amounts(row, seconds_within(row, 0, 200.0))["CPU"] == pytest.approx(20 + 8.0)


async def test_usage_meters_a_container_from_its_process_start_to_its_exit(db):
    """Not from its placement: planning it, materialising its image, building the client package are not its life."""
    apps, functions, containers = Apps(db), Functions(db), Containers(db)
    app = await apps.create("", "metered", api_pb2.APP_STATE_EPHEMERAL)
    fid = await functions.precreate(app.app_id, "f")
    held = Allocation("local", 1000, 1024, (Gpu(0, "A10G", "GPU-0"),))
    for task_id in ("ta-ran", "ta-failed", "ta-starting"):
        await containers.placed(Task(task_id, "rv-1", fid, app.app_id, 100.0, held))

    async def seconds(until: float) -> float:
        return sum(r.seconds for r in (await report(db, Prices(), since=0, by="app", until=until)).rows)

    assert await seconds(until=200.0) == 0.0  # none runs yet
    await containers.running("ta-ran", 110.0)
    await containers.finished("ta-ran", 0, 140.0)
    await containers.finished("ta-failed", -1, 150.0)  # it never ran
    await containers.close_unfinished()  # a restart while ta-starting was still starting: it never ran
    assert await seconds(until=200.0) == pytest.approx(30.0)
    assert (await containers.get("ta-ran")).started_at == 110.0


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_store(request, tmp_path):
    """The spec of a store nothing has written yet."""
    if request.param == "sqlite":
        return str(tmp_path / "shoal.db")
    return await fresh_database(request.getfixturevalue("postgres_url"), f"t{os.getpid()}_{tmp_path.name}".lower())


async def _revision(db: Database) -> str:
    async with db.tx() as conn:
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()


async def test_a_new_store_is_made_by_its_migrations(empty_store):
    db = Database(empty_store)
    await db.create_schema()
    head = await _revision(db)
    await db.create_schema()  # every start: nothing to do
    assert await _revision(db) == head
    token_id, secret = await Tokens(db).create()
    await Tokens(db).verify(token_id, secret)
    await db.close()


def _store_from_before_migrations(conn) -> None:
    """The baseline's tables with no migration history: what shoal made before it had migrations."""
    command.upgrade(migrations.config(conn), migrations.BASELINE)
    conn.execute(text("DROP TABLE alembic_version"))


async def test_a_store_from_before_migrations_is_taken_as_the_baseline(empty_store):
    db = Database(empty_store)
    async with db.tx() as conn:
        await conn.run_sync(_store_from_before_migrations)
    token_id, secret = await Tokens(db).create()
    await db.create_schema()
    assert await _revision(db) >= migrations.BASELINE
    await Tokens(db).verify(token_id, secret)  # what it held is still there
    await db.close()


async def test_a_store_older_than_the_baseline_is_refused_by_name(empty_store):
    db = Database(empty_store)
    async with db.tx() as conn:
        await conn.run_sync(_store_from_before_migrations)
        await conn.execute(text("ALTER TABLE tasks DROP COLUMN gpu_type"))
    with pytest.raises(migrations.StoreTooOld, match="table tasks lacks gpu_type"):
        await db.create_schema()
    await db.close()


async def test_a_store_from_a_newer_shoal_is_refused_by_name(empty_store):
    db = Database(empty_store)
    await db.create_schema()
    async with db.tx() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrations.StoreTooNew, match="schema 9999, from a newer shoal"):
        await db.create_schema()
    await db.close()


async def test_queue_partitions_from_before_their_ttl_expire_a_day_after_the_migration(empty_store):
    db = Database(empty_store)
    async with db.tx() as conn:
        await conn.run_sync(lambda c: command.upgrade(migrations.config(c), "0016"))
        await conn.execute(insert(schema.queue_items).values(queue_id="qu-1", partition="70", value=b"x"))
    await db.create_schema()
    async with db.tx() as conn:
        (row,) = (await conn.execute(select(schema.queue_partitions))).all()
    assert (row.queue_id, row.partition) == ("qu-1", "70") and row.expires_at > time.time() + 23 * 3600
    await db.close()


async def test_the_migrations_make_what_schema_py_says(empty_store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = Database(empty_store)
    await db.create_schema()
    async with db.tx() as conn:
        drift = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), schema.metadata))
    assert drift == [], "schema.py changed without a migration: python -m shoal.store.migrations 'what changed'"
    await db.close()
