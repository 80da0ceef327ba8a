"""Secrets: anonymous ones by content, named ones per environment."""

import pytest
from modal_proto import api_pb2

from shoal.control.errors import AlreadyExists, InvalidArgument, NotFound
from shoal.control.secrets import Secrets
from shoal.store.database import Database

Creation = api_pb2.ObjectCreationType


@pytest.fixture
async def secrets(tmp_path):
    db = Database(str(tmp_path / "shoal.db"))
    await db.create_schema()
    yield Secrets(db)
    await db.close()


async def test_anonymous_secrets_are_identified_by_content(secrets):
    a = await secrets.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_EPHEMERAL, {"K": "1"})
    b = await secrets.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_ANONYMOUS_OWNED_BY_APP, {"K": "1"})
    c = await secrets.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_EPHEMERAL, {"K": "2"})
    assert a.secret_id == b.secret_id != c.secret_id
    assert await secrets.in_environment("") == []  # anonymous ones are not listed


async def test_named_secrets_lifecycle(secrets):
    created = await secrets.get_or_create("db", "", Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS, {"PW": "x"})
    with pytest.raises(AlreadyExists):
        await secrets.get_or_create("db", "", Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS, {"PW": "y"})
    found = await secrets.get_or_create("db", "main", Creation.OBJECT_CREATION_TYPE_UNSPECIFIED, {})
    assert found.secret_id == created.secret_id and found.env == {"PW": "x"}
    with pytest.raises(NotFound, match="missing the keys USER"):
        await secrets.get_or_create("db", "", Creation.OBJECT_CREATION_TYPE_UNSPECIFIED, {}, ["USER"])
    replaced = await secrets.get_or_create(
        "db", "", Creation.OBJECT_CREATION_TYPE_CREATE_OVERWRITE_IF_EXISTS, {"PW": "z"}
    )
    assert replaced.secret_id != created.secret_id
    assert [s.name for s in await secrets.in_environment("main")] == ["db"]
    other = await secrets.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_EPHEMERAL, {"A": "1", "PW": "w"})
    assert await secrets.env([replaced.secret_id, other.secret_id]) == {"PW": "w", "A": "1"}
    await secrets.delete(replaced.secret_id)
    with pytest.raises(NotFound, match="Secret 'db' not found in environment 'main'"):
        await secrets.get_or_create("db", "", Creation.OBJECT_CREATION_TYPE_UNSPECIFIED, {})


async def test_keys_must_be_variable_names(secrets):
    with pytest.raises(InvalidArgument, match="'A-B'"):
        await secrets.get_or_create("", "", Creation.OBJECT_CREATION_TYPE_EPHEMERAL, {"A-B": "1"})
