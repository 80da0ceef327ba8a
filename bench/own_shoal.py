"""For the benchmarks that start a shoal of their own: `with own_shoal(why, *options):` starts
one (SHOAL_HOME, default settings plus the options), points this process's client at it, and
stops it at the end. It refuses to run beside a shoal already up.
"""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

SHOAL = os.path.join(os.path.dirname(sys.executable), "shoal")


@contextlib.contextmanager
def own_shoal(why: str, *options: str, env: dict[str, str] | None = None) -> Iterator[None]:
    if subprocess.run([SHOAL, "env"], capture_output=True).returncode == 0:
        sys.exit(f"stop shoal first (shoal down): this starts its own, {why}")
    subprocess.run([SHOAL, "up", "--detach", *options], env={**os.environ, **(env or {})}, check=True)
    try:
        printed = subprocess.run([SHOAL, "env"], capture_output=True, text=True, check=True).stdout
        for line in printed.split():
            key, _, value = line.partition("=")
            if key.startswith("MODAL_"):
                os.environ[key] = value.strip("'\"")
        yield
    finally:
        subprocess.run([SHOAL, "down"], check=True)
