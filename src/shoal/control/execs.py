"""Commands run in running containers (`modal container exec`), and who may run them.

The client asks for access to a container (TaskGetCommandRouterAccess) with its token, and gets
a URL and a JWT good for that container only; it then starts a command, reads its output and
writes its stdin through the command router at that URL, presenting the JWT each time.
"""

import asyncio
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable

import jwt

from ..runtime import Command
from ..worker.agent import ExecOptions
from .errors import InvalidArgument, NotFound, Unauthenticated

ACCESS_TTL = 3600.0  # seconds a container's access token lasts; the client asks again before it ends
KEEP_FINISHED = 600.0  # seconds a finished command's output stays readable

RunIn = Callable[[str, list[str], ExecOptions], Awaitable[Command]]


class Execs:
    def __init__(self, secret: bytes, run_in: RunIn):
        # A key of its own, derived from the server's secret (which also signs blob URLs).
        self._secret = hmac.new(secret, b"command router access", hashlib.sha256).digest()
        self._run_in = run_in  # (task id, args, options) -> the command, started
        self._running: dict[tuple[str, str], Command] = {}  # (task id, exec id) -> its command
        self._finishing: set[asyncio.Task] = set()

    def close(self) -> None:
        for finishing in self._finishing:
            finishing.cancel()

    def auth_token(self, token_id: str) -> str:
        """A short-lived token the client sends beside its credentials (AuthTokenGet), as it does to
        Modal's newer services; shoal goes on checking the credentials, so it only has to be well formed."""
        return jwt.encode({"sub": token_id, "exp": int(time.time() + ACCESS_TTL)}, self._secret, algorithm="HS256")

    def access(self, task_id: str) -> str:
        return jwt.encode({"task_id": task_id, "exp": int(time.time() + ACCESS_TTL)}, self._secret, algorithm="HS256")

    def verify(self, token: str, task_id: str) -> None:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"])
        except jwt.InvalidTokenError as e:
            raise Unauthenticated(f"Invalid access to container {task_id}: {e}") from None
        if claims.get("task_id") != task_id:
            raise Unauthenticated(f"The access token is for another container than {task_id}")

    async def start(self, task_id: str, exec_id: str, args: list[str], options: ExecOptions, timeout: float) -> None:
        """Start a command; a start sent again for the same id starts nothing more."""
        if (task_id, exec_id) in self._running:
            return
        if not args:
            raise InvalidArgument("No command to run")
        command = self._running[(task_id, exec_id)] = await self._run_in(task_id, args, options)
        finishing = asyncio.create_task(self._finish(task_id, exec_id, command, timeout))
        self._finishing.add(finishing)
        finishing.add_done_callback(self._finishing.discard)

    async def _finish(self, task_id: str, exec_id: str, command: Command, timeout: float) -> None:
        try:
            await asyncio.wait_for(command.wait(), timeout or None)
        except asyncio.TimeoutError:
            command.kill()
        await asyncio.sleep(KEEP_FINISHED)
        self._running.pop((task_id, exec_id), None)

    def busy(self, task_id: str) -> bool:
        """Whether a command started in the container still runs."""
        return any(t == task_id and c.returncode is None for (t, _), c in self._running.items())

    def get(self, task_id: str, exec_id: str) -> Command:
        command = self._running.get((task_id, exec_id))
        if command is None:
            raise NotFound(f"No command {exec_id} in container {task_id}")
        return command
