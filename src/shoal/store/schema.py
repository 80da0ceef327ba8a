"""The durable state of a control plane, as SQLAlchemy Core tables.

Protobuf messages the client defines (function definitions, images, inputs,
outputs) are stored serialized: the store keeps them, the domain reads them.
"""

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

tokens = Table(
    "tokens",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

environments = Table(
    "environments",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("environment_id", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

apps = Table(
    "apps",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("environment", String(64), nullable=False),
    Column("name", String(128)),
    Column("description", Text, nullable=False, default=""),
    Column("state", Integer, nullable=False),
    Column("client_id", String(64)),
    Column("created_at", Float, nullable=False),
    Column("stopped_at", Float),
)

app_objects = Table(
    "app_objects",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("tag", String(256), primary_key=True),
    Column("object_id", String(64), nullable=False),
)

functions = Table(
    "functions",
    metadata,
    Column("function_id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("tag", String(256), nullable=False),
    Column("definition", LargeBinary),  # api_pb2.Function, empty until FunctionCreate
    # a class bound to constructor parameters is a function of its own
    Column("bound_params", LargeBinary),
    Column("created_at", Float, nullable=False),
)

classes = Table(
    "classes",
    metadata,
    Column("class_id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("tag", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("image_id", String(80), primary_key=True),
    Column("definition", LargeBinary, nullable=False),  # api_pb2.Image
    Column("status", String(16), nullable=False),  # pending | ready | failed
    Column("built", Text),  # JSON of images.spec.BuiltImage
    Column("error", Text),
    Column("created_at", Float, nullable=False),
)

# Which app asked for which image (ImageGetOrCreate): an image stays referenced while its app
# is live, before any function names it.
image_uses = Table(
    "image_uses",
    metadata,
    Column("image_id", String(80), primary_key=True),
    Column("app_id", String(64), primary_key=True, index=True),
)

mounts = Table(
    "mounts",
    metadata,
    Column("mount_id", String(80), primary_key=True),
    Column("name", String(128), index=True),
    Column("files", Text, nullable=False),  # JSON: [[path, sha256, mode], ...]
    Column("created_at", Float, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("blob_id", String(80), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

function_calls = Table(
    "function_calls",
    metadata,
    Column("function_call_id", String(64), primary_key=True),
    Column("function_id", String(64), nullable=False, index=True),
    Column("invocation_type", Integer, nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

inputs = Table(
    "inputs",
    metadata,
    Column("input_id", String(64), primary_key=True),
    Column("function_call_id", String(64), nullable=False, index=True),
    Column("function_id", String(64), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("input", LargeBinary, nullable=False),  # api_pb2.FunctionInput
    Column("status", String(16), nullable=False),  # pending | done
    Column("retry_count", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
)
Index("inputs_pending", inputs.c.status, inputs.c.function_id)

outputs = Table(
    "outputs",
    metadata,
    Column("input_id", String(64), primary_key=True),
    Column("function_call_id", String(64), nullable=False, index=True),
    Column("idx", Integer, nullable=False),
    Column("item", LargeBinary, nullable=False),  # api_pb2.FunctionGetOutputsItem
    Column("created_at", Float, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("function_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # running | stopped
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("exit_code", Integer),
)

app_logs = Table(
    "app_logs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("task_id", String(64), nullable=False, default=""),
    Column("function_id", String(64), nullable=False, default=""),
    Column("fd", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Column("ts", Float, nullable=False),
)
