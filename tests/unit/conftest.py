import pytest
from sqlalchemy import delete

from shoal.store import schema
from shoal.store.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, tmp_path):
    """An empty store on each backend."""
    if request.param == "sqlite":
        database = Database(str(tmp_path / "shoal.db"))
    else:
        database = Database(request.getfixturevalue("postgres_url"))
    await database.create_schema()
    async with database.tx() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            await conn.execute(delete(table))
    yield database
    await database.close()
