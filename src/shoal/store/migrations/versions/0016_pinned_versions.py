"""functions pinned to a version of their app

Revision ID: 0016, after 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("functions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pinned_version", sa.Integer(), nullable=True))
