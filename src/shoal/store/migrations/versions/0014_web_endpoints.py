"""web endpoints: the host label each is served at

Revision ID: 0014, after 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_endpoints",
        sa.Column("label", sa.String(length=63), nullable=False),
        sa.Column("function_id", sa.String(length=64), nullable=False),
        sa.Column("method_name", sa.String(length=128), server_default="", nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("label"),
    )
