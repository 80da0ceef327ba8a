"""The worker registry: joining, leaving, and the secrets containers on joined workers carry."""

import asyncio

import pytest

from shoal.control.errors import AlreadyExists
from shoal.control.placement import Gpu, GpuChoice, Pool, Request, Unsatisfiable, Worker
from shoal.control.workers import Workers


class _Link:
    async def start(self, plan, on_output, on_exit) -> None: ...

    async def stop(self, task_id: str, graceful: bool = False) -> None: ...


def _h100_worker(name: str) -> Worker:
    return Worker(name, 2000, 4096, (Gpu(0, "H100", f"GPU-{name}"),))


def test_a_worker_that_leaves_takes_its_gpus_out_of_the_pool():
    lost: list[str] = []

    async def on_lost(worker_id: str) -> None:
        lost.append(worker_id)

    pool = Pool()
    workers = Workers(pool, on_lost)
    workers.join(_h100_worker("a"), _Link())
    workers.join(_h100_worker("b"), _Link())
    h100 = Request(0, 0, (GpuChoice("H100", 1),))
    assert pool.place(h100, "ta-1").worker_id == "a"
    asyncio.run(workers.leave("a"))
    assert lost == ["a"] and workers.link("a") is None
    assert pool.place(h100, "ta-2").worker_id == "b"
    assert pool.place(h100, "ta-3") is None  # b's one H100 is taken; a's is gone with it
    asyncio.run(workers.leave("b"))
    assert pool.place(h100, "ta-4") is None  # no worker has one now, but one may come back: it waits
    pool.rejoin_deadline = 0.0  # ... for a while only
    with pytest.raises(Unsatisfiable, match="no workers"):
        pool.place(h100, "ta-4")


def test_worker_names_are_unique_while_connected():
    workers = Workers(Pool(), lambda worker_id: asyncio.sleep(0))
    workers.join(_h100_worker("a"), _Link())
    with pytest.raises(AlreadyExists, match="already connected"):
        workers.join(_h100_worker("a"), _Link())
    asyncio.run(workers.leave("a"))
    workers.join(_h100_worker("a"), _Link())  # back after it was lost


def test_task_secrets_are_checked_and_revoked():
    workers = Workers(Pool(), lambda worker_id: asyncio.sleep(0))
    secret = workers.issue_secret("ta-1")
    assert workers.verify_secret("ta-1", secret)
    assert not workers.verify_secret("ta-1", secret + "x")
    assert not workers.verify_secret("ta-2", secret)
    workers.revoke_secret("ta-1")
    assert not workers.verify_secret("ta-1", secret)
