"""Blob uploads on the HTTP side: one streamed request, or parts as the client sends a large
file (its own multipart code against shoal's routes), each checked against the blob's sha256."""

import hashlib
import io
import os

import aiohttp
import pytest
from aiohttp import web
from modal._utils.blob_utils import perform_multipart_upload
from modal._utils.http_utils import ClientSessionRegistry

from shoal.api.blob_urls import BlobUrls
from shoal.api.http import http_app
from shoal.store.blobs import BlobStore

PART = 1024 * 1024


@pytest.fixture
async def served(tmp_path):
    blobs = BlobStore(str(tmp_path / "blobs"))
    runner = web.AppRunner(http_app(blobs, BlobUrls("", b"k" * 32), []))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield blobs, BlobUrls(f"http://127.0.0.1:{port}", b"k" * 32)
    await ClientSessionRegistry.close_session()
    await runner.cleanup()


async def test_a_blob_in_parts_is_joined_and_checked(served):
    blobs, urls = served
    data = os.urandom(3 * PART + 5)
    sha = hashlib.sha256(data).hexdigest()
    blob_id = f"bl-{sha}"
    await perform_multipart_upload(
        io.BytesIO(data),
        content_length=len(data),
        max_part_size=PART,
        part_urls=[urls.upload_part(blob_id, n) for n in range(1, 5)],
        completion_url=urls.complete(blob_id, 4),
    )  # it checks the S3-style ETag of the whole in the answer
    assert blobs.get(sha) == data
    assert os.listdir(os.path.join(blobs.root, ".parts")) == []


async def test_parts_that_do_not_hash_to_the_blob_are_refused_and_nothing_is_kept(served):
    blobs, urls = served
    sha = hashlib.sha256(b"the real content").hexdigest()
    blob_id = f"bl-{sha}"
    async with aiohttp.ClientSession() as session:
        async with session.put(urls.upload_part(blob_id, 1), data=b"other content") as r:
            assert r.status == 200
        async with session.post(urls.complete(blob_id, 2)) as r:
            assert r.status == 400 and "missing" in await r.text()
        async with session.post(urls.complete(blob_id, 1)) as r:
            assert r.status == 400 and "does not match" in await r.text()
        async with session.put(urls.upload(blob_id), data=b"other content") as r:
            assert r.status == 400
        async with session.post(urls.complete(blob_id, 1).replace("sig=", "sig=0")) as r:
            assert r.status == 403
    assert not blobs.has(sha)
    assert not [n for _, _, names in os.walk(blobs.root) for n in names if n.startswith(".tmp")]


async def test_one_request_streams_a_blob_in(served):
    blobs, urls = served
    data = os.urandom(5 * PART)
    sha = hashlib.sha256(data).hexdigest()
    async with aiohttp.ClientSession() as session:
        async with session.put(urls.upload(f"bl-{sha}"), data=data) as r:
            assert r.status == 200 and r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert blobs.get(sha) == data
