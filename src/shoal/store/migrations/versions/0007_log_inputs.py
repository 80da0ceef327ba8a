"""app_logs.function_call_id, input_id: the input a container ran when it printed a line

Revision ID: 0007, after 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("function_call_id", sa.String(length=64), server_default="", nullable=False))
        batch_op.add_column(sa.Column("input_id", sa.String(length=64), server_default="", nullable=False))
