"""Write a new migration: what schema.py holds beyond the last migration, to review.

.venv/bin/python -m shoal.store.migrations "what changed"
"""

import sys
import tempfile

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from . import config


def main(message: str) -> None:
    with tempfile.NamedTemporaryFile(suffix=".db") as f, create_engine(f"sqlite:///{f.name}").begin() as conn:
        cfg = config(conn)
        command.upgrade(cfg, "head")
        number = len(list(ScriptDirectory.from_config(cfg).walk_revisions())) + 1
        command.revision(cfg, message, autogenerate=True, rev_id=f"{number:04d}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
