"""Handing inputs to waiting containers."""

import asyncio

from modal_proto import api_pb2
from shoal.control.calls import Calls
from shoal.store.database import Database


async def make_calls(tmp_path) -> Calls:
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    return Calls(db, lambda function_id: api_pb2.FunctionRetryPolicy())


async def test_one_input_wakes_one_waiting_container(tmp_path):
    calls = await make_calls(tmp_path)
    stop = asyncio.Event()
    first = asyncio.create_task(calls.next_inputs("fu-1", "ta-1", 1, 5, stop))
    second = asyncio.create_task(calls.next_inputs("fu-1", "ta-2", 1, 5, stop))
    await asyncio.sleep(0.05)
    await calls.create("fu-1", 0, [(0, api_pb2.FunctionInput(args=b"x"))])
    done, pending = await asyncio.wait({first, second}, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1
    assert [i.idx for i in done.pop().result()] == [0]
    await calls.create("fu-1", 0, [(1, api_pb2.FunctionInput(args=b"y"))])
    assert [i.idx for i in await asyncio.wait_for(pending.pop(), 1)] == [1]
    await calls.flush()


async def test_a_stopping_container_takes_nothing_and_passes_its_turn(tmp_path):
    calls = await make_calls(tmp_path)
    stopping, staying = asyncio.Event(), asyncio.Event()
    stopping.set()
    await calls.create("fu-1", 0, [(0, api_pb2.FunctionInput())])
    assert await calls.next_inputs("fu-1", "ta-1", 1, 0.1, stopping) == []
    assert [i.idx for i in await calls.next_inputs("fu-1", "ta-2", 1, 0.1, staying)] == [0]
