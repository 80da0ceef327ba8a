"""baseline: the store as it was when migrations began

Revision ID: 0001, the first
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_logs",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("function_id", sa.String(length=64), nullable=False),
        sa.Column("fd", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("app_logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_logs_app_id"), ["app_id"], unique=False)

    op.create_table(
        "app_versions",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("objects", sa.Text(), nullable=False),
        sa.Column("revisions", sa.Text(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("rollback_version", sa.Integer(), nullable=True),
        sa.Column("deployed_at", sa.Float(), nullable=False),
        sa.Column("deployed_by", sa.String(length=128), nullable=False),
        sa.Column("client_version", sa.String(length=32), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("commit_info", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("app_id", "version"),
    )
    op.create_table(
        "apps",
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.Float(), nullable=True),
        sa.Column("live_version", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("app_id"),
    )
    with op.batch_alter_table("apps", schema=None) as batch_op:
        batch_op.create_index("apps_by_name", ["environment", "name"], unique=False)

    op.create_table(
        "blobs",
        sa.Column("blob_id", sa.String(length=80), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("blob_id"),
    )
    op.create_table(
        "classes",
        sa.Column("class_id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("class_id"),
    )
    with op.batch_alter_table("classes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_classes_app_id"), ["app_id"], unique=False)

    op.create_table(
        "environments",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("environment_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("environment_id"),
    )
    op.create_table(
        "function_calls",
        sa.Column("function_call_id", sa.String(length=64), nullable=False),
        sa.Column("revision_id", sa.String(length=64), nullable=False),
        sa.Column("invocation_type", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("function_call_id"),
    )
    with op.batch_alter_table("function_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_function_calls_revision_id"), ["revision_id"], unique=False)

    op.create_table(
        "functions",
        sa.Column("function_id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=256), nullable=False),
        sa.Column("latest_revision", sa.String(length=64), nullable=True),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("bound_params", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("function_id"),
    )
    with op.batch_alter_table("functions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_functions_app_id"), ["app_id"], unique=False)

    op.create_table(
        "image_uses",
        sa.Column("image_id", sa.String(length=80), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("image_id", "app_id"),
    )
    with op.batch_alter_table("image_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_uses_app_id"), ["app_id"], unique=False)

    op.create_table(
        "images",
        sa.Column("image_id", sa.String(length=80), nullable=False),
        sa.Column("definition", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("built", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("image_id"),
    )
    op.create_table(
        "inputs",
        sa.Column("input_id", sa.String(length=64), nullable=False),
        sa.Column("function_call_id", sa.String(length=64), nullable=False),
        sa.Column("revision_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("input", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("input_id"),
    )
    with op.batch_alter_table("inputs", schema=None) as batch_op:
        batch_op.create_index("inputs_pending", ["status", "revision_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inputs_function_call_id"), ["function_call_id"], unique=False)

    op.create_table(
        "mounts",
        sa.Column("mount_id", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("mount_id"),
    )
    with op.batch_alter_table("mounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mounts_name"), ["name"], unique=False)

    op.create_table(
        "outputs",
        sa.Column("input_id", sa.String(length=64), nullable=False),
        sa.Column("function_call_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("item", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("input_id"),
    )
    with op.batch_alter_table("outputs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outputs_function_call_id"), ["function_call_id"], unique=False)

    op.create_table(
        "revisions",
        sa.Column("revision_id", sa.String(length=64), nullable=False),
        sa.Column("function_id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.LargeBinary(), nullable=False),
        sa.Column("bound_params", sa.LargeBinary(), nullable=True),
        sa.Column("gpu_choices", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("revision_id"),
    )
    op.create_table(
        "secrets",
        sa.Column("secret_id", sa.String(length=80), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("env", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("secret_id"),
    )
    with op.batch_alter_table("secrets", schema=None) as batch_op:
        batch_op.create_index("secrets_by_name", ["environment", "name"], unique=True)

    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("app_id", sa.String(length=64), nullable=False),
        sa.Column("function_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("milli_cpu", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("gpu_type", sa.String(length=32), nullable=False),
        sa.Column("gpu_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("task_id"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_app_id"), ["app_id"], unique=False)
        batch_op.create_index("tasks_by_time", ["started_at"], unique=False)

    op.create_table(
        "tokens",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token_id"),
    )
    op.create_table(
        "webhooks",
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("url"),
    )
