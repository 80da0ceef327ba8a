"""Handing inputs to waiting containers."""

import asyncio

from modal_proto import api_pb2

from shoal.control.calls import Calls
from shoal.store.database import Database


async def make_calls(tmp_path) -> Calls:
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    return Calls(db, lambda revision_id: api_pb2.FunctionRetryPolicy())


async def test_one_input_wakes_one_waiting_container(tmp_path):
    calls = await make_calls(tmp_path)
    stop = asyncio.Event()
    first = asyncio.create_task(calls.next_inputs("rv-1", "ta-1", 1, 5, stop))
    second = asyncio.create_task(calls.next_inputs("rv-1", "ta-2", 1, 5, stop))
    await asyncio.sleep(0.05)
    await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput(args=b"x"))])
    done, pending = await asyncio.wait({first, second}, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1
    assert [i.idx for i in done.pop().result()] == [0]
    await calls.create("rv-1", 0, [(1, api_pb2.FunctionInput(args=b"y"))])
    assert [i.idx for i in await asyncio.wait_for(pending.pop(), 1)] == [1]
    await calls.flush()


async def test_a_stopping_container_takes_nothing_and_passes_its_turn(tmp_path):
    calls = await make_calls(tmp_path)
    stopping, staying = asyncio.Event(), asyncio.Event()
    stopping.set()
    await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput())])
    assert await calls.next_inputs("rv-1", "ta-1", 1, 0.1, stopping) == []
    assert [i.idx for i in await calls.next_inputs("rv-1", "ta-2", 1, 0.1, staying)] == [0]


async def test_blocking_calls_leave_memory_once_their_results_are_taken(tmp_path):
    calls = await make_calls(tmp_path)
    ok = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
    kept = {}
    for kind in (api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC, api_pb2.FUNCTION_CALL_INVOCATION_TYPE_ASYNC):
        call, _ = await calls.create("rv-1", kind, [(0, api_pb2.FunctionInput())])
        [inp] = await calls.next_inputs("rv-1", "ta-1", 1, 0, asyncio.Event())
        await calls.put_output("ta-1", inp.input_id, ok, 0)
        outputs, _, _ = await calls.get_outputs(
            call.call_id, last_entry_id="0-0", timeout=0, clear_on_success=True, start_idx=0
        )
        assert len(outputs) == 1
        kept[kind] = call.call_id in calls.calls
    assert kept == {
        api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC: False,
        api_pb2.FUNCTION_CALL_INVOCATION_TYPE_ASYNC: True,
    }
    await calls.flush()


async def test_a_maps_outputs_come_back_together_and_the_last_one_ends_the_wait(tmp_path, monkeypatch):
    monkeypatch.setattr("shoal.control.calls.OUTPUT_BATCH_WINDOW", 60)
    calls = await make_calls(tmp_path)
    ok = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
    call, _ = await calls.create("rv-1", 0, [(i, api_pb2.FunctionInput()) for i in range(3)])
    inputs = await calls.next_inputs("rv-1", "ta-1", 3, 0, asyncio.Event())
    await calls.put_output("ta-1", inputs[0].input_id, ok, 0)
    waiting = asyncio.create_task(
        calls.get_outputs(call.call_id, last_entry_id="0-0", timeout=60, clear_on_success=False)
    )
    for inp in inputs[1:]:
        await asyncio.sleep(0.01)
        await calls.put_output("ta-1", inp.input_id, ok, 0)
    # Far inside the 60 s window: the call's last output ends the wait, with every output.
    outputs, last_entry_id, unfinished = await asyncio.wait_for(waiting, 5)
    assert [o.idx for o in outputs] == [0, 1, 2]
    assert (last_entry_id, unfinished) == ("3", 0)
    await calls.flush()


async def test_the_call_graph_runs_from_the_root_call_through_the_calls_its_inputs_made(tmp_path):
    calls = await make_calls(tmp_path)
    ok = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
    root, [parent] = await calls.create("rv-outer", 0, [(0, api_pb2.FunctionInput())])
    await calls.next_inputs("rv-outer", "ta-outer", 1, 0, asyncio.Event())
    child, _ = await calls.create("rv-inner", 0, [(i, api_pb2.FunctionInput()) for i in range(2)], parent.input_id)
    first, _ = await calls.next_inputs("rv-inner", "ta-inner", 2, 0, asyncio.Event())
    await calls.put_output("ta-inner", first.input_id, ok, 0)
    unrelated, _ = await calls.create("rv-inner", 0, [(0, api_pb2.FunctionInput())])

    for asked in (child.call_id, root.call_id):  # from any call of the tree, the whole tree
        graph_calls, inputs, truncated = await calls.call_graph(asked)
        assert {(c.call_id, c.parent_input_id) for c in graph_calls} == {
            (root.call_id, ""),
            (child.call_id, parent.input_id),
        }
        assert [(i.call_id, i.status, i.task_id) for i in inputs] == [
            (root.call_id, 0, "ta-outer"),  # running
            (child.call_id, ok.status, "ta-inner"),  # done
            (child.call_id, 0, "ta-inner"),  # running
        ]
        assert not truncated
    assert unrelated.call_id not in {c.call_id for c in (await calls.call_graph(root.call_id))[0]}
    await calls.flush()
    restarted = Calls(calls.db, lambda revision_id: api_pb2.FunctionRetryPolicy())  # the store's view alone
    assert [(i.status, i.task_id) for i in (await restarted.call_graph(root.call_id))[1]] == [
        (0, ""),
        (ok.status, "ta-inner"),
        (0, ""),
    ]


async def test_a_containers_output_belongs_to_its_input_while_it_runs_just_one(tmp_path, monkeypatch):
    calls = await make_calls(tmp_path)
    ok = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS)
    await calls.create("rv-1", 0, [(i, api_pb2.FunctionInput()) for i in range(3)])
    [first] = await calls.next_inputs("rv-1", "ta-1", 1, 0, asyncio.Event())
    assert calls.input_running_on("ta-1") == first and calls.input_running_on("ta-2") is None
    await calls.put_output("ta-1", first.input_id, ok, 0)
    assert calls.input_running_on("ta-1") == first  # output trailing the input's own
    [second] = await calls.next_inputs("rv-1", "ta-1", 1, 0, asyncio.Event())
    assert calls.input_running_on("ta-1") is None  # the first's or the second's: neither is named
    monkeypatch.setattr("shoal.control.calls.LATE_OUTPUT", 0)
    assert calls.input_running_on("ta-1") == second
    await calls.next_inputs("rv-1", "ta-1", 1, 0, asyncio.Event())  # a concurrent container: two at once
    assert calls.input_running_on("ta-1") is None
    await calls.flush()


async def test_a_container_finishes_only_the_inputs_it_runs(tmp_path):
    calls = await make_calls(tmp_path)
    call, _ = await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput())])
    [inp] = await calls.next_inputs("rv-1", "ta-1", 1, 0, asyncio.Event())
    forged = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS, data=b"forged")
    await calls.put_output("ta-2", inp.input_id, forged, 0)  # another container's, or a stale one's
    assert calls.input_running_on("ta-1") == inp
    real = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS, data=b"real")
    await calls.put_output("ta-1", inp.input_id, real, 0)
    outputs, _, _ = await calls.get_outputs(call.call_id, last_entry_id="0-0", timeout=0, clear_on_success=False)
    assert [o.result.data for o in outputs] == [b"real"]
    await calls.flush()


async def test_a_generators_items_come_only_from_the_container_running_it(tmp_path):
    calls = await make_calls(tmp_path)
    call, _ = await calls.create("rv-1", 0, [(0, api_pb2.FunctionInput())])
    await calls.next_inputs("rv-1", "ta-1", 1, 0, asyncio.Event())
    await calls.put_data_out("ta-2", call.call_id, [api_pb2.DataChunk(index=1, data=b"forged")])
    await calls.put_data_out("ta-1", call.call_id, [api_pb2.DataChunk(index=1, data=b"real")])
    assert [c.data for c in (await calls.get(call.call_id)).data_out] == [b"real"]
    await calls.flush()


async def test_failing_some_queued_inputs_leaves_the_others_queued(tmp_path):
    calls = await make_calls(tmp_path)
    web, plain = api_pb2.FunctionInput(method_name="web"), api_pb2.FunctionInput(method_name="plain")
    call, _ = await calls.create("rv-1", 0, [(0, web), (1, plain)])
    lost = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_TERMINATED, exception="lost")
    await calls.fail_queued("rv-1", lost, lambda i: i.input.method_name == "web")
    assert [(o.idx, o.result.exception) for o in call.outputs] == [(0, "lost")]
    assert [i.idx for i in calls.queue("rv-1").pending] == [1]
    await calls.flush()
