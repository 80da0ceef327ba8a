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
    # the version every new call runs: switching it is what makes a deploy atomic
    Column("live_version", Integer),
    Column("tags", Text, nullable=False, server_default="{}"),  # JSON: {key: value}, App(tags=) and App.set_tags()
    # when a detached app's local entrypoint returned: it stops once its calls are done
    Column("entrypoint_done_at", Float),
)
Index("apps_by_name", apps.c.environment, apps.c.name)

app_versions = Table(
    "app_versions",
    metadata,
    Column("app_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(64), nullable=False),  # of its objects and their function revisions
    Column("objects", Text, nullable=False),  # JSON: {tag: function or class id}
    Column("revisions", Text, nullable=False),  # JSON: {function id: revision id}
    Column("previous_version", Integer),
    Column("rollback_version", Integer),  # set when this version re-deploys an older one
    Column("deployed_at", Float, nullable=False),
    Column("deployed_by", String(128), nullable=False, default=""),
    Column("client_version", String(32), nullable=False, default=""),
    Column("tag", String(64), nullable=False, default=""),
    Column("commit_info", LargeBinary),  # api_pb2.CommitInfo
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("url", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
)

functions = Table(
    "functions",
    metadata,
    Column("function_id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("tag", String(256), nullable=False),
    # the revision FunctionCreate made last; an app version pins the one its calls run
    Column("latest_revision", String(64)),
    # a class bound to constructor parameters: its calls run the parent's live revision
    Column("parent_id", String(64)),
    Column("bound_params", LargeBinary),
    # and to the options Cls.with_options() (and with_concurrency, with_batching) gave it
    Column("bound_options", LargeBinary),
    # or pinned to a version of its app (Function.from_name(version=)): its calls run that version's revision
    Column("pinned_version", Integer),
    Column("created_at", Float, nullable=False),
)

revisions = Table(
    "revisions",
    metadata,
    Column("revision_id", String(64), primary_key=True),  # content hash of all below
    Column("function_id", String(64), nullable=False),
    Column("app_id", String(64), nullable=False),
    Column("definition", LargeBinary, nullable=False),  # api_pb2.Function
    Column("bound_params", LargeBinary),
    Column("gpu_choices", Text, nullable=False, default=""),  # "H100:2,A100-80GB:1": gpu= fallbacks in order
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

# Secrets: environment variables for containers and build steps. Named ones are unique per
# environment; anonymous ones (Secret.from_dict) are identified by their content.
secrets = Table(
    "secrets",
    metadata,
    Column("secret_id", String(80), primary_key=True),
    Column("environment", String(64), nullable=False),
    Column("name", String(128)),
    Column("env", Text, nullable=False),  # JSON: {name: value}
    Column("created_at", Float, nullable=False),
)
Index("secrets_by_name", secrets.c.environment, secrets.c.name, unique=True)


def _named_objects(name: str, id_column: str) -> Table:
    """Objects the client names (unique per environment) or makes ephemeral (no name; their
    client's heartbeats keep them): control/named_objects.py."""
    table = Table(
        name,
        metadata,
        Column(id_column, String(80), primary_key=True),
        Column("environment", String(64), nullable=False),
        Column("name", String(128)),  # None: ephemeral
        Column("created_at", Float, nullable=False),
        Column("heartbeat_at", Float),  # an ephemeral one's last heartbeat
    )
    Index(f"{name}_by_name", table.c.environment, table.c.name, unique=True)
    return table


# Volumes: their files are a directory each under the control plane's home.
volumes = _named_objects("volumes", "volume_id")

# Dicts (modal.Dict): entries by the sha256 of the key as the client serialized it (keys
# compare by those bytes, as in Modal).
dicts = _named_objects("dicts", "dict_id")
dict_entries = Table(
    "dict_entries",
    metadata,
    Column("dict_id", String(80), primary_key=True),
    Column("key_sha256", String(64), primary_key=True),
    Column("key", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=False),
)

# Queues (modal.Queue): items in order per partition (its key in hex, "" for the default one).
queues = _named_objects("queues", "queue_id")
queue_items = Table(
    "queue_items",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("queue_id", String(80), nullable=False),
    Column("partition", String(128), nullable=False),
    Column("value", LargeBinary, nullable=False),
)
Index("queue_items_in_order", queue_items.c.queue_id, queue_items.c.partition, queue_items.c.seq)
# When each partition's items are dropped: partition_ttl after its last put, as in Modal.
queue_partitions = Table(
    "queue_partitions",
    metadata,
    Column("queue_id", String(80), primary_key=True),
    Column("partition", String(128), primary_key=True),
    Column("expires_at", Float, nullable=False),
)
Index("queue_partitions_by_expiry", queue_partitions.c.expires_at)

# Web endpoints: the host label each is served at, and the function (a class's method) behind it.
web_endpoints = Table(
    "web_endpoints",
    metadata,
    Column("label", String(63), primary_key=True),
    Column("function_id", String(64), nullable=False),
    Column("method_name", String(128), nullable=False, server_default=""),
    Column("app_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)

# A sandbox's record; its output lives with its command while it runs (see control/sandboxes.py).
sandboxes = Table(
    "sandboxes",
    metadata,
    Column("sandbox_id", String(64), primary_key=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("environment", String(64), nullable=False),
    Column("name", String(64)),
    Column("tags", Text, nullable=False, server_default="{}"),  # JSON: name -> value
    Column("image_id", String(64), nullable=False),
    Column("timeout_secs", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("task_id", String(64)),
    Column("finished_at", Float),
    Column("result", LargeBinary),  # api_pb2.GenericResult, once it ended
)
Index("sandboxes_by_time", sandboxes.c.created_at)

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
    Column("revision_id", String(64), nullable=False, index=True),
    Column("invocation_type", Integer, nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    # the input whose function made this call (FunctionCall.get_call_graph)
    Column("parent_input_id", String(64), index=True),
)

inputs = Table(
    "inputs",
    metadata,
    Column("input_id", String(64), primary_key=True),
    Column("function_call_id", String(64), nullable=False, index=True),
    Column("revision_id", String(64), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("input", LargeBinary, nullable=False),  # api_pb2.FunctionInput
    Column("status", String(16), nullable=False),  # pending | done
    Column("retry_count", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("method_name", String(128)),  # a class's method the input calls, for modal function calls
)
Index("inputs_pending", inputs.c.status, inputs.c.revision_id)
Index("inputs_by_revision", inputs.c.revision_id, inputs.c.created_at)  # a function's recent inputs

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
    Column("state", String(16), nullable=False),  # starting | running | stopped
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("exit_code", Integer),
    Column("ready_at", Float),  # its first input request: imports and @enter done
    # what it held, for usage metering
    Column("milli_cpu", Integer, nullable=False, default=0),
    Column("memory_mb", Integer, nullable=False, default=0),
    Column("gpu_type", String(32), nullable=False, default=""),
    Column("gpu_count", Integer, nullable=False, default=0),
    # what it used above its reservation, billed on top of it (see worker/excess.py)
    Column("cpu_excess_core_seconds", Float, nullable=False, server_default="0"),
    Column("memory_excess_gib_seconds", Float, nullable=False, server_default="0"),
)
Index("tasks_by_time", tasks.c.started_at)

# What each running container used, every few seconds: `modal function stats` shows percentiles.
task_samples = Table(
    "task_samples",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("cores", Float, nullable=False),  # over the second before
    Column("memory_gib", Float, nullable=False),  # then, file cache aside
    Column("gpu_utilization", Float),  # percent, of a container given real GPUs
)
Index("task_samples_by_time", task_samples.c.at)

app_logs = Table(
    "app_logs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("app_id", String(64), nullable=False, index=True),
    Column("task_id", String(64), nullable=False, default=""),
    Column("function_id", String(64), nullable=False, default=""),
    # the input the container was running when it printed this, if it ran exactly one
    Column("function_call_id", String(64), nullable=False, server_default=""),
    Column("input_id", String(64), nullable=False, server_default=""),
    Column("fd", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Column("ts", Float, nullable=False),
)
