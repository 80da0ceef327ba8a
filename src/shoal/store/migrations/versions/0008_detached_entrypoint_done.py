"""apps.entrypoint_done_at: a detached app whose entrypoint returned still stops after a restart

Revision ID: 0008, after 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entrypoint_done_at", sa.Float(), nullable=True))
