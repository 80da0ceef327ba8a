"""What a container is made of: the caller's description, independent of runc."""

from dataclasses import dataclass, field


class ContainerError(RuntimeError):
    """A container could not be set up or started."""


@dataclass
class BindMount:
    source: str  # host path
    target: str  # path in the container
    readonly: bool = True


@dataclass
class ContainerSpec:
    id: str  # unique; also the runc container id
    lower_dirs: list[str]  # overlay lower dirs, bottom first
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)  # the full environment
    cwd: str = "/"
    # None = root; "name", "uid", "uid:gid" or "name:group", resolved in the container's /etc files.
    user: str | None = None
    # Kept after the container ends (an image build captures its layer here);
    # None = a throw-away upper dir removed with the container.
    upper_dir: str | None = None
    bind_mounts: list[BindMount] = field(default_factory=list)
    cpu: float | None = None  # cores
    memory_mb: int | None = None
    hostname: str | None = None
    gpu_devices: list[str] = field(default_factory=list)  # e.g. ["/dev/nvidia0"]
    # False: a network namespace of its own with loopback alone (block_network=True); the
    # container still reaches shoal through its socket, a bind mount.
    network: bool = True
    # A network namespace of its own on the runtime's bridge (network.py): an address of its own,
    # where it listens on any port without meeting other containers; outbound traffic as with the host's.
    own_network: bool = False
    # With a network of its own: the IPv4 networks its outbound connections may reach (DNS to the
    # machine's name servers aside); None for any.
    allowed_networks: list[str] | None = None
    # ... and the server names its TLS connections (port 443) may reach besides ("*." wildcards); None for none.
    allowed_domains: list[str] | None = None
