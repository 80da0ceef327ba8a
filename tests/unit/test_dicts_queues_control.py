"""Dicts and queues on both stores: entries by key bytes, FIFO partitions with a bound and a TTL,
and a get woken by the put it waits for."""

import asyncio

import pytest
from modal_proto import api_pb2
from sqlalchemy import select

from shoal.control.dicts import Dicts
from shoal.control.errors import InvalidArgument, NotFound, ResourceExhausted
from shoal.control.queues import PARTITION_LIMIT, Queues
from shoal.store import schema

EPHEMERAL = api_pb2.OBJECT_CREATION_TYPE_EPHEMERAL


async def test_dict_entries_by_key_bytes(db):
    dicts = Dicts(db)
    d = await dicts.get_or_create("", "", EPHEMERAL, [(b"a", b"1")])
    big_key = b"k" * 10_000  # longer than an index row may be: entries are found by the key's hash
    assert await dicts.update(d.object_id, [(big_key, b"2"), (b"b", b"x"), (b"b", b"3")], if_not_exists=False)
    assert await dicts.get(d.object_id, big_key) == b"2"
    assert await dicts.get(d.object_id, b"b") == b"3"  # the last value of a key wins
    assert not await dicts.update(d.object_id, [(b"a", b"9"), (b"c", b"9")], if_not_exists=True)
    assert await dicts.get(d.object_id, b"c") is None  # refused whole: one key was there
    assert await dicts.pop(d.object_id, b"a") == b"1" and await dicts.pop(d.object_id, b"a") is None
    assert sorted(await dicts.contents(d.object_id)) == [(b"b", b"3"), (big_key, b"2")]
    assert await dicts.length(d.object_id) == 2
    await dicts.delete(d.object_id)
    with pytest.raises(NotFound):
        await dicts.get(d.object_id, b"b")


async def test_queue_partitions_are_fifo_and_bounded(db):
    queues = Queues(db)
    q, _ = await queues.objects.get_or_create("jobs", "", api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)
    await queues.put(q.object_id, b"", [b"1", b"2", b"3"])
    await queues.put(q.object_id, b"p", [b"x"])
    assert [v for _, v in await queues.next_items(q.object_id, b"", 0, 0.0)] == [b"1", b"2", b"3"]
    first, *_ = await queues.next_items(q.object_id, b"", 0, 0.0)
    assert [v for _, v in await queues.next_items(q.object_id, b"", first[0], 0.0)] == [b"2", b"3"]
    assert await queues.get(q.object_id, b"", 2, 0.0) == [b"1", b"2"]
    assert await queues.length(q.object_id, b"", total=False) == 1
    assert await queues.length(q.object_id, b"", total=True) == 2
    assert await queues.sizes([q.object_id, "qu-none"]) == {q.object_id: (2, 2)}
    with pytest.raises(ResourceExhausted, match="at most 5,000 items"):
        await queues.put(q.object_id, b"p", [b"v"] * PARTITION_LIMIT)
    with pytest.raises(InvalidArgument, match="at most 64 bytes"):
        await queues.put(q.object_id, b"k" * 65, [b"v"])
    await queues.clear(q.object_id, b"p", all_partitions=False)
    assert await queues.length(q.object_id, b"", total=True) == 1
    await queues.clear(q.object_id, b"", all_partitions=True)
    assert await queues.get(q.object_id, b"", 1, 0.0) == []


async def test_a_waiting_get_is_woken_by_a_put(db):
    queues = Queues(db)
    q, _ = await queues.objects.get_or_create("", "", EPHEMERAL)
    for wait in (queues.next_items(q.object_id, b"", 0, 30.0), queues.get(q.object_id, b"", 5, 30.0)):
        waiting = asyncio.create_task(wait)
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await queues.put(q.object_id, b"", [b"item"])
        found = await asyncio.wait_for(waiting, 10)
        assert [v if isinstance(v, bytes) else v[1] for v in found] == [b"item"]
        await queues.clear(q.object_id, b"", all_partitions=True)  # an iteration leaves it there


async def test_a_partition_expires_its_ttl_after_its_last_put(db):
    queues = Queues(db)
    ids = {}
    for name in ("get", "iterate", "len", "total", "sizes", "put", "swept", "kept"):
        queue, _ = await queues.objects.get_or_create(name, "", api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING)
        ids[name] = queue.object_id
        await queues.put(ids[name], b"p", [b"old"], ttl=1)
    await queues.put(ids["kept"], b"p", [b"new"], ttl=3600)  # the last put's TTL is the whole partition's
    await queues.put(ids["kept"], b"", [b"d"])  # the client's default: a day
    await queues.put(ids["put"], b"other", [b"o"], ttl=3600)  # partitions expire one by one
    await asyncio.sleep(1.5)

    # Each reader is the first to look at its queue since the TTL ran out: none sees the items.
    assert await queues.get(ids["get"], b"p", 5, 0.0) == []
    assert await queues.next_items(ids["iterate"], b"p", 0, 0.0) == []
    assert await queues.length(ids["len"], b"p", total=False) == 0
    assert await queues.length(ids["total"], b"", total=True) == 0
    assert await queues.sizes([ids["sizes"]]) == {}
    await queues.put(ids["put"], b"p", [b"new"], ttl=3600)  # a new item does not bring the old back
    assert await queues.get(ids["put"], b"p", 5, 0.0) == [b"new"]
    assert await queues.length(ids["put"], b"", total=True) == 1
    assert [v for _, v in await queues.next_items(ids["kept"], b"p", 0, 0.0)] == [b"old", b"new"]

    await queues.drop_expired()  # the sweep reclaims what no one looked at
    async with db.tx() as conn:
        swept = schema.queue_items.c.queue_id == ids["swept"]
        assert (await conn.execute(select(schema.queue_items).where(swept))).all() == []
        kept = select(schema.queue_partitions.c.partition).where(schema.queue_partitions.c.queue_id == ids["kept"])
        assert sorted((await conn.execute(kept)).scalars()) == ["", b"p".hex()]

    await queues.put(ids["kept"], b"p", [b"last"], ttl=1)  # a shorter TTL cuts the partition's short
    await asyncio.sleep(1.5)
    assert await queues.length(ids["kept"], b"p", total=False) == 0
    assert await queues.length(ids["kept"], b"", total=True) == 1
