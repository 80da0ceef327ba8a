"""function_calls.parent_input_id: the call graph

Revision ID: 0003, after 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("function_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_input_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_function_calls_parent_input_id"), ["parent_input_id"], unique=False)
