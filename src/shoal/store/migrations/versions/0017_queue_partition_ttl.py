"""queue partitions' expiry (partition_ttl)

Revision ID: 0017, after 0016
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_partitions",
        sa.Column("queue_id", sa.String(length=80), nullable=False),
        sa.Column("partition", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("queue_id", "partition"),
    )
    with op.batch_alter_table("queue_partitions", schema=None) as batch_op:
        batch_op.create_index("queue_partitions_by_expiry", ["expires_at"], unique=False)

    # Items already held expire as if put now with the client's default TTL (a day).
    items = sa.table("queue_items", sa.column("queue_id"), sa.column("partition"))
    partitions = sa.table("queue_partitions", sa.column("queue_id"), sa.column("partition"), sa.column("expires_at"))
    held = sa.select(items.c.queue_id, items.c.partition, sa.literal_column(repr(time.time() + 24 * 3600))).distinct()
    op.execute(partitions.insert().from_select(["queue_id", "partition", "expires_at"], held))
