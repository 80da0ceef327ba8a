"""volumes: named and ephemeral volumes, their files a directory each

Revision ID: 0012, after 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("volume_id", sa.String(length=80), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("volume_id"),
    )
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.create_index("volumes_by_name", ["environment", "name"], unique=True)
