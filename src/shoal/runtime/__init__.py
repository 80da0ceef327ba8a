"""Container runtime: runs processes in runc containers whose rootfs is an overlay of directories."""

from .exec import Command, Exec
from .runc import Container, Runtime
from .spec import BindMount, ContainerError, ContainerSpec

__all__ = ["BindMount", "Command", "Container", "ContainerError", "ContainerSpec", "Exec", "Runtime"]
