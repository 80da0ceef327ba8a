"""Alembic's entry: migrations run on the connection the store hands over (see __init__.py)."""

from alembic import context

from shoal.store.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters a table by copying it; batch operations do that for us
)
with context.begin_transaction():
    context.run_migrations()
