"""dicts and queues: named and ephemeral ones, their entries and items

Revision ID: 0013, after 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dict_entries",
        sa.Column("dict_id", sa.String(length=80), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("dict_id", "key_sha256"),
    )
    op.create_table(
        "dicts",
        sa.Column("dict_id", sa.String(length=80), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("dict_id"),
    )
    with op.batch_alter_table("dicts", schema=None) as batch_op:
        batch_op.create_index("dicts_by_name", ["environment", "name"], unique=True)

    op.create_table(
        "queue_items",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("queue_id", sa.String(length=80), nullable=False),
        sa.Column("partition", sa.String(length=128), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("queue_items", schema=None) as batch_op:
        batch_op.create_index("queue_items_in_order", ["queue_id", "partition", "seq"], unique=False)

    op.create_table(
        "queues",
        sa.Column("queue_id", sa.String(length=80), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("queue_id"),
    )
    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.create_index("queues_by_name", ["environment", "name"], unique=True)
