"""inputs_by_revision: a function's recent inputs, for modal function calls and stats

Revision ID: 0005, after 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inputs", schema=None) as batch_op:
        batch_op.create_index("inputs_by_revision", ["revision_id", "created_at"], unique=False)
