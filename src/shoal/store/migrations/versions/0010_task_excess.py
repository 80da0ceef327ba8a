"""tasks.cpu_excess_core_seconds, memory_excess_gib_seconds: what a container used above its
reservation, billed on top of it

Revision ID: 0010, after 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cpu_excess_core_seconds", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("memory_excess_gib_seconds", sa.Float(), server_default="0", nullable=False))
