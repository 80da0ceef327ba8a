"""Container plans: what a container of a function revision, or of a sandbox, starts with.

The image's layers, the client package and code mounts stacked on them, the
environment with the function's secrets, and the arguments the client runtime
reads at start-up. Function containers and image build functions share it. A
sandbox's container has its image and mounts, and holds still while its
command runs in it (see sandboxes.py).
"""

import asyncio
import ipaddress
import math
import re

from modal_proto import api_pb2

from ..images.client_pkg import ensure_client_pkg
from ..images.spec import BuiltImage
from ..worker.agent import ContainerPlan
from ..worker.buckets import BucketMount
from .apps import Apps
from .containers import reservation
from .deployments import Deployments
from .errors import InvalidArgument
from .functions import Revision
from .mounts import CLIENT_MOUNT_ID, Mounts
from .scheduler import SandboxLaunch
from .secrets import Secrets
from .volumes import Volumes

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# A sandbox container's own process: it only keeps the container up for the command run in it.
HOLD = ["sleep", "infinity"]
BLOCKED = api_pb2.NetworkAccess.NetworkAccessType.BLOCKED


class ContainerPlans:
    def __init__(
        self, home: str, apps: Apps, deployments: Deployments, mounts: Mounts, secrets: Secrets, volumes: Volumes
    ):
        self.home = home
        self.apps = apps
        self.deployments = deployments
        self.mounts = mounts
        self.secrets = secrets
        self.volumes = volumes

    async def plan(self, task_id: str, revision: Revision, built: BuiltImage, image_dirs: list[str]) -> ContainerPlan:
        """A container running `revision` on the image `built` (whose layer dirs are `image_dirs`)."""
        fdef = revision.definition
        python = built.config.python_version or "3.11"
        client_dir = await asyncio.to_thread(ensure_client_pkg, self.home, python)
        mount_dirs = [await self.mounts.materialise(m) for m in fdef.mount_ids if m != CLIENT_MOUNT_ID]
        env = {**built.config.env, **await self.secrets.env(list(fdef.secret_ids))}
        env["PYTHONPATH"] = ":".join(p for p in ("/pkg", env.get("PYTHONPATH", ""), "/root") if p)
        env.setdefault("PYTHONUNBUFFERED", "1")  # prints reach the log as they happen
        app = await self.apps.get(revision.app_id)
        # Reserved as in Modal: the function's own settings cannot override them. The client
        # reads MODAL_ENVIRONMENT for lookups by name made inside the container.
        env.update(
            MODAL_ENVIRONMENT=app.environment,
            MODAL_IMAGE_ID=fdef.image_id,
            MODAL_CLOUD_PROVIDER=api_pb2.CloudProvider.Name(api_pb2.CLOUD_PROVIDER_UNSPECIFIED),
            MODAL_REGION="",  # shoal has no regions
        )
        layout = await self.deployments.app_layout(revision.app_id)
        # The function's own dependencies (image, mounts, ...) are hydrated from the layout too.
        present = {o.object_id for o in layout.objects}
        layout.objects.extend(
            api_pb2.Object(object_id=dep.object_id) for dep in fdef.object_dependencies if dep.object_id not in present
        )
        container_args = api_pb2.ContainerArguments(
            task_id=task_id,
            function_id=revision.function_id,
            app_id=revision.app_id,
            function_def=fdef,
            environment_name=app.environment,
            app_layout=layout,
            serialized_params=revision.params,
        )
        resources = fdef.resources
        milli_cpu, memory_mb = reservation(resources.milli_cpu, resources.memory_mb)
        # As in Modal, libraries that size their thread pools by these fit the CPU reservation
        # (unless the image or a secret sets them).
        for name in THREAD_ENV:
            env.setdefault(name, str(max(1, math.ceil(milli_cpu / 1000))))
        return ContainerPlan(
            task_id=task_id,
            lower_dirs=image_dirs + [client_dir] + mount_dirs,
            args=list(built.config.entrypoint or []) + ["python", "-m", "modal._container_entrypoint"],
            env=env,
            cwd=built.config.workdir if built.config.workdir not in ("", "/") else "/root",
            user=built.config.user,
            container_args=container_args.SerializeToString(),
            cpu=resources.milli_cpu_max / 1000 if resources.milli_cpu_max else None,
            memory_mb=resources.memory_mb_max or None,
            network=not fdef.block_network,
            own_network=_listens(fdef),
            reserved_cores=milli_cpu / 1000,
            reserved_memory_mb=memory_mb,
            volumes=await self.volumes.binds(list(fdef.volume_mounts)),
            buckets=await self._buckets(list(fdef.cloud_bucket_mounts)),
        )

    async def _buckets(
        self, mounts: list[api_pb2.CloudBucketMount], inline: dict[str, dict[str, str]] | None = None
    ) -> list[BucketMount]:
        """Cloud bucket mounts, with the keys of their secrets (or those given `inline`, by mount
        path): AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (GOOGLE_ACCESS_KEY_ID and
        GOOGLE_ACCESS_KEY_SECRET for Google's HMAC keys), and AWS_REGION when set."""
        found = []
        for mount in mounts:
            env = (inline or {}).get(mount.mount_path) or (
                await self.secrets.env([mount.credentials_secret_id]) if mount.credentials_secret_id else {}
            )
            found.append(
                BucketMount(
                    bucket=mount.bucket_name,
                    mount_path=mount.mount_path,
                    endpoint=mount.bucket_endpoint_url,
                    key_prefix=mount.key_prefix,
                    path_style=mount.force_path_style,
                    read_only=mount.read_only,
                    requester_pays=mount.requester_pays,
                    access_key=env.get("AWS_ACCESS_KEY_ID") or env.get("GOOGLE_ACCESS_KEY_ID", ""),
                    secret_key=env.get("AWS_SECRET_ACCESS_KEY") or env.get("GOOGLE_ACCESS_KEY_SECRET", ""),
                    region=env.get("AWS_REGION", ""),
                )
            )
        return found

    async def check_sandbox(self, definition: api_pb2.Sandbox) -> None:
        """Its mounts and volumes exist (else NotFound, naming the one that does not)."""
        for mount_id in definition.mount_ids:
            if mount_id != CLIENT_MOUNT_ID:
                await self.mounts.files(mount_id)
        await self.volumes.binds(list(definition.volume_mounts))

    async def sandbox(
        self, task_id: str, launch: SandboxLaunch, built: BuiltImage, image_dirs: list[str]
    ) -> ContainerPlan:
        """A sandbox's container on the image `built`, with its mounts, volumes, resources and environment."""
        definition = launch.definition
        env = {**built.config.env, **launch.env, "MODAL_SANDBOX_ID": launch.sandbox_id}
        mount_dirs = [await self.mounts.materialise(m) for m in definition.mount_ids if m != CLIENT_MOUNT_ID]
        if CLIENT_MOUNT_ID in definition.mount_ids:  # `modal shell app.py`: the client, as in the function's
            python = built.config.python_version or "3.11"
            mount_dirs.insert(0, await asyncio.to_thread(ensure_client_pkg, self.home, python))
            env["PYTHONPATH"] = ":".join(p for p in ("/pkg", env.get("PYTHONPATH", "")) if p)
        resources = definition.resources
        milli_cpu, memory_mb = reservation(resources.milli_cpu, resources.memory_mb)
        blocked = definition.block_network or definition.network_access.network_access_type == BLOCKED
        return ContainerPlan(
            task_id=task_id,
            lower_dirs=image_dirs + mount_dirs,
            args=HOLD,
            env=env,
            cwd=definition.workdir or built.config.workdir or "/",
            user=built.config.user,
            container_args=b"",
            cpu=resources.milli_cpu_max / 1000 if resources.milli_cpu_max else None,
            memory_mb=resources.memory_mb_max or None,
            network=not blocked,
            # A network of its own (unless it has none): its code may be anyone's, and reaches
            # neither the services on its machine's loopback nor another sandbox's ports.
            own_network=not blocked,
            allowed_networks=allowed_networks(definition.network_access),
            allowed_domains=allowed_domains(definition.network_access),
            inbound_networks=inbound_networks(definition),
            reserved_cores=milli_cpu / 1000,
            reserved_memory_mb=memory_mb,
            volumes=await self.volumes.binds(list(definition.volume_mounts)),
            buckets=await self._buckets(list(definition.cloud_bucket_mounts), launch.bucket_keys),
            serve_api=False,
            fs_tools=True,
        )


_DOMAIN = re.compile(
    r"(\*\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)


def _listens(fdef: api_pb2.Function) -> bool:
    """Whether its containers listen on a port of the definition's (a server's, a @modal.web_server's):
    each gets a network of its own, so that they can share a machine."""
    configs = [fdef.webhook_config, *(m.webhook_config for m in fdef.method_definitions.values())]
    return fdef.is_server or any(c.type == api_pb2.WEBHOOK_TYPE_WEB_SERVER for c in configs)


def allowed_domains(access: api_pb2.NetworkAccess) -> list[str] | None:
    """A sandbox's `outbound_domain_allowlist` (server names its TLS connections on port 443 may
    reach, `*.` wildcards, `*` for any), None when it has none. InvalidArgument for one that is not
    a name."""
    if access.network_access_type != api_pb2.NetworkAccess.NetworkAccessType.ALLOWLIST:
        return None
    for domain in access.allowed_domains:
        if domain != "*" and not _DOMAIN.fullmatch(domain):
            raise InvalidArgument(f"outbound_domain_allowlist: {domain!r} is not a domain name")
    return list(access.allowed_domains) or None


def inbound_networks(definition: api_pb2.Sandbox) -> list[str] | None:
    """A sandbox's `inbound_cidr_allowlist`: where its tunnels and connect tokens take connections
    from; None for anywhere (the client sends none as an empty list). InvalidArgument for a network
    that is not one."""
    return [_network(cidr, "inbound_cidr_allowlist") for cidr in definition.inbound_cidr_allowlist] or None


def _network(cidr: str, option: str) -> str:
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError:
        raise InvalidArgument(f"{option}: {cidr!r} is not an IP network") from None


def allowed_networks(access: api_pb2.NetworkAccess) -> list[str] | None:
    """A sandbox's `outbound_cidr_allowlist` (IPv4 networks; its IPv6 ones have no route from a
    container anyway), None when its outbound connections are not limited. InvalidArgument for
    a network that is not one."""
    if access.network_access_type != api_pb2.NetworkAccess.NetworkAccessType.ALLOWLIST:
        return None
    networks = [_network(cidr, "outbound_cidr_allowlist") for cidr in access.allowed_cidrs]
    return [n for n in networks if ipaddress.ip_network(n).version == 4]
