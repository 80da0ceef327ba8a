"""Where the running shoal leaves its address and the first token, under SHOAL_HOME."""

import json
import os


def shoal_home() -> str:
    return os.environ.get("SHOAL_HOME") or os.path.expanduser("~/.local/share/shoal")


def state_path(home: str) -> str:
    return os.path.join(home, "server.json")


def token_path(home: str) -> str:
    return os.path.join(home, "token.json")


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def running_state(home: str) -> dict | None:
    state = read_json(state_path(home))
    return state if state and alive(state["pid"]) else None
