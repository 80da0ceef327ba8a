"""End-to-end fixture: a real `shoal up` and the real modal client against it."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import require_root_and_runc

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
APPS = Path(__file__).parent / "apps"
# Image layers (shared with the image unit tests) and client packages outlive a test
# run, so only the first run on a machine builds the base image; all else starts fresh.
CACHE = {
    "images": Path(os.environ.get("SHOAL_TEST_LAYERS", "/var/tmp/shoal-test-layers")),
    "client": Path(os.environ.get("SHOAL_TEST_CLIENT", "/var/tmp/shoal-test-client")),
}
# The GPUs the test shoal's worker declares (tests/e2e/test_gpus.py).
FAKE_GPUS = "H100:2,A10G:1"


def free_ports() -> int:
    """A port P with P + 1 to P + 3 free too (shoal serves blobs, web endpoints and the command
    router there). Each is bound to check: a port that an outgoing connection uses has no
    listener to answer a connect, but a bind fails."""
    while True:
        with socket.socket() as s, socket.socket() as s1, socket.socket() as s2, socket.socket() as s3:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            try:
                s1.bind(("127.0.0.1", port + 1))
                s2.bind(("127.0.0.1", port + 2))
                s3.bind(("127.0.0.1", port + 3))
            except OSError:
                continue
            return port


class Shoal:
    def __init__(self, home: Path, port: int):
        self.home = home
        self.port = port

    def shoal(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        argv = [str(VENV_BIN / "shoal"), *args]
        proc = subprocess.run(argv, env=self.base_env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
        env["SHOAL_HOME"] = str(self.home)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        return env

    def client_env(self) -> dict[str, str]:
        env = self.base_env()
        for line in self.shoal("env").stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        env["MODAL_CONFIG_PATH"] = str(self.home / "modal.toml")
        return env

    def modal(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self._client_run([str(VENV_BIN / "modal"), *args], check, timeout)

    def python(self, script: str, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self._client_run([sys.executable, script, *args], check, timeout)

    def _client_run(self, argv: list[str], check: bool, timeout: float) -> subprocess.CompletedProcess:
        proc = subprocess.run(argv, env=self.client_env(), capture_output=True, text=True, timeout=timeout, cwd=APPS)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn_modal(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(VENV_BIN / "modal"), *args],
            env=self.client_env(),
            cwd=APPS,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def up(self, *args: str) -> None:
        self.shoal("up", "--detach", "--port", str(self.port), *(args or ("--fake-gpus", FAKE_GPUS)))

    def down(self) -> None:
        self.shoal("down", check=False)


@contextmanager
def running_shoal(
    clone_images: bool = False, build_client: bool = False, up_args: tuple[str, ...] = ()
) -> Iterator[Shoal]:
    """A shoal of its own; its image store is the shared cache, or a copy made of hard links
    for tests that collect garbage (which must not empty the cache other tests build on);
    with build_client, its client package is built afresh, by its first container."""
    require_root_and_runc()
    # Beside the caches: layers are built in the home's file system and renamed into place.
    home = Path(tempfile.mkdtemp(prefix="shoal-e2e-", dir="/var/tmp"))
    for name, cache in CACHE.items():
        cache.mkdir(parents=True, exist_ok=True)
        if name == "client" and build_client:
            continue
        if name == "images" and clone_images:
            subprocess.run(["cp", "-al", str(cache), str(home / name)], check=True)
        else:
            os.symlink(cache, home / name)
    instance = Shoal(home, free_ports())
    try:
        for attempt in range(3):
            try:
                instance.up(*up_args)
                break
            except AssertionError as e:
                # Between the check and shoal's bind, another process may take one of the ports.
                if "address already in use" not in str(e) or attempt == 2:
                    raise
                instance.port = free_ports()
        yield instance
    finally:
        instance.down()
        log = home / "server.log"
        if log.exists():
            tail = log.read_text(errors="replace")[-4000:]
            print("---- shoal server log (tail) ----\n" + tail)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def shoal():
    with running_shoal() as instance:
        yield instance
