"""Schema migrations of the store (Alembic), run by `Database.create_schema` at every start.

A change to schema.py comes with a migration in versions/, made by

    .venv/bin/python -m shoal.store.migrations "what changed"

which writes the difference between schema.py and the last migration as a new one to review.
"""

import logging
import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect

log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start chatter; what changes is logged here

HERE = os.path.dirname(os.path.abspath(__file__))
# The schema as it was when migrations began: stores made before then are at this revision.
BASELINE = "0001"


class StoreTooOld(RuntimeError):
    pass


class StoreTooNew(RuntimeError):
    pass


def _baseline_columns() -> dict[str, set[str]]:
    """The baseline's tables and their columns, from running it on an empty in-memory store."""
    with create_engine("sqlite://").begin() as conn:
        command.upgrade(config(conn), BASELINE)
        found = inspect(conn)
        return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names() if t != "alembic_version"}


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", HERE)
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection) -> None:
    """Bring the store to the newest schema (on a new store, create it)."""
    cfg = config(connection)
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None and inspect(connection).has_table("tokens"):
        _check_baseline(connection)
        command.stamp(cfg, BASELINE)
        current = BASELINE
    scripts = ScriptDirectory.from_config(cfg)
    head = scripts.get_current_head()
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise StoreTooNew(f"the store has schema {current}, from a newer shoal than this one (up to {head}): run that")
    if current != head:
        log.info("store schema: %s -> %s", current or "new", head)
        command.upgrade(cfg, "head")


def _check_baseline(connection: Connection) -> None:
    """A store from before migrations must hold the baseline's tables and columns to be taken as it."""
    found = inspect(connection)
    for table, columns in _baseline_columns().items():
        missing = columns - ({c["name"] for c in found.get_columns(table)} if found.has_table(table) else set())
        if missing:
            raise StoreTooOld(
                f"the store predates this shoal's schema history (table {table} lacks {', '.join(sorted(missing))}); "
                "start from a new SHOAL_HOME or --database"
            )
