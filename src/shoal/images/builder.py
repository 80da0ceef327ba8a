"""Builds images from Dockerfile instructions: one cached layer per RUN, COPY and ADD.

A layer's id is a hash of everything that decides its content: the layer below
it, the instruction after substitution, the config it runs with, and for copies
the content of each file. Equal inputs give an equal id, so the layer is reused.
"""

import asyncio
import copy
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from . import dockerfile
from .dockerfile import DockerfileError, Instruction
from .layers import LayerView
from .registry import RegistryAuth
from .spec import BuiltImage, ImageConfig
from .store import LayerStore

Log = Callable[[str], None]
# run_step(lower_dirs_bottom_first, upper_dir, argv, env, workdir, user, log, volumes) -> exit code;
# volumes: what the step mounts besides the image (as Volumes.binds gives them), opaque here
RunStep = Callable[[list[str], str, list[str], dict[str, str], str, str | None, Log, list], Awaitable[int]]
# run(lower_dirs_bottom_first, upper_dir): runs a build function over the image; raises BuildError when it fails.
RunFunction = Callable[[list[str], str], Awaitable[None]]
# Resolves `FROM <ref>` for refs that are not a named base image, e.g. "python:3.11.12-slim-bookworm".
BaseResolver = Callable[[str, Log, RegistryAuth | None], Awaitable[BuiltImage]]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Part of every layer id: change it when what goes into an id, or how a step is carried out, changes.
LAYER_KEY_VERSION = "shoal-layer-1"
LOG_TAIL_LINES = 30
_PYTHON = re.compile(r"python(3\.\d+)")


class BuildError(Exception):
    def __init__(self, command: str, log_tail: str = "", reason: str = "failed"):
        self.command = command
        self.log_tail = log_tail
        message = f"Image build step `{command}` {reason}"
        super().__init__(message + (f"\n{log_tail}" if log_tail else ""))


class Builder:
    def __init__(self, store: LayerStore, run_step: RunStep, resolve_base: BaseResolver):
        self.store = store
        self.run_step = run_step
        self.resolve_base = resolve_base

    async def build(
        self,
        commands: list[str],
        *,
        bases: dict[str, BuiltImage],
        context: dict[str, str],
        build_args: dict[str, str] = {},
        secret_env: dict[str, str] = {},
        secret_ids: list[str] = [],
        registry_auth: RegistryAuth | None = None,
        volumes: list = [],
        force_build: bool = False,
        log: Log = lambda s: None,
    ) -> BuiltImage:
        """Build `commands`; `context` maps COPY source paths (as written in the commands) to host files.

        RUN steps see `secret_env` (the values of the secrets `secret_ids`) in their environment;
        their layers are keyed on the secrets' ids, never on the values. `registry_auth` logs in
        to the registry of the images FROM names. RUN steps mount `volumes` (run_commands(volumes=)),
        which are part of their layers' keys (which volume, where), their contents not."""
        try:
            instructions = dockerfile.parse(commands)
        except DockerfileError as e:
            raise BuildError(e.line, reason=f"cannot be parsed: {e}") from e
        secrets = (secret_env, sorted(secret_ids))
        run = _BuildRun(self, bases, context, build_args, secrets, registry_auth, volumes, force_build, log)
        for ins in instructions:
            log(f"=> {ins.text}\n")
            try:
                await run.step(ins)
            except DockerfileError as e:
                raise BuildError(ins.text, reason=f"failed: {e}") from e
        stage = run.stage
        if stage is None:
            raise BuildError("\n".join(commands), reason="is not an image: it has no FROM instruction")
        view = LayerView([self.store.layer_dir(layer) for layer in stage.layers])
        stage.config.python_version = (
            await asyncio.to_thread(detect_python_version, view, stage.config.env.get("PATH"))
            or stage.config.python_version
        )
        return BuiltImage(stage.layers, stage.config, run.built)

    async def run_function(
        self,
        base: BuiltImage,
        inputs: object,
        run: RunFunction,
        *,
        force_build: bool = False,
        log: Log = lambda s: None,
    ) -> BuiltImage:
        """The image `base` plus one layer: what `run` changes in its file system (Image.run_function).

        `inputs` is everything that decides what the function does (its source, globals, arguments)."""
        if not await self.store.use(base.layers):
            raise BuildError("run_function", reason="cannot start: the base image's layers were garbage collected")
        key = {"version": LAYER_KEY_VERSION, "parent": base.layers[-1] if base.layers else "", "step": "run_function",
               "inputs": inputs}  # fmt: skip
        layer_id = _layer_id(key)
        built = 0
        async with self.store.building(layer_id, rebuild=force_build) as upper:
            if upper is None:
                log("=> cached\n")
            else:
                await run([self.store.layer_dir(layer) for layer in base.layers], upper)
                built = 1
        return BuiltImage([*base.layers, layer_id], copy.deepcopy(base.config), built)


def _layer_id(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass
class _Stage:
    layers: list[str]
    config: ImageConfig
    args: dict[str, str] = field(default_factory=dict)  # ARG values declared in this stage
    cmd_set: bool = False  # a CMD in this stage survives a later ENTRYPOINT; an inherited one does not

    @property
    def variables(self) -> dict[str, str]:
        return {**self.args, **self.config.env}  # ENV wins over ARG, as in Docker


class _BuildRun:
    """The state of one build: its stages (FROM ... AS name) and what it has built."""

    def __init__(
        self,
        builder: Builder,
        bases: dict[str, BuiltImage],
        context: dict[str, str],
        build_args: dict[str, str],
        secrets: tuple[dict[str, str], list[str]],
        registry_auth: RegistryAuth | None,
        volumes: list,
        force: bool,
        log: Log,
    ):
        self.store = builder.store
        self.builder = builder
        self.bases = bases
        self.context = {_context_key(k): v for k, v in context.items()}
        self.build_args = build_args
        self.secret_env, self.secret_ids = secrets
        self.force = force
        self.log = log
        self.global_args: dict[str, str] = {}  # ARGs before the first FROM, usable in FROM lines
        self.stages: dict[str, _Stage] = {}  # by name and by number, for FROM and COPY --from
        self.stage: _Stage | None = None
        self.stage_count = 0
        self.built = 0
        self.registry_auth = registry_auth
        self.volumes = volumes

    async def step(self, ins: Instruction) -> None:
        if ins.keyword == "FROM":
            return await self._from(ins)
        if ins.keyword == "ARG":
            return self._arg(ins)
        if self.stage is None:
            raise DockerfileError(f"{ins.keyword} comes before the first FROM")
        stage, config = self.stage, self.stage.config
        match ins.keyword:
            case "RUN":
                await self._run(ins)
            case "COPY" | "ADD":
                await self._copy(ins)
            case "ENV":
                config.env.update(dockerfile.env_pairs(ins.args, stage.variables))
            case "WORKDIR":
                await self._workdir(dockerfile.expand(ins.args, stage.variables))
            case "USER":
                config.user = dockerfile.expand(ins.args, stage.variables) or None
            case "SHELL":
                config.shell = dockerfile.shell_argv(ins.args)
            case "ENTRYPOINT":
                config.entrypoint = self._command(ins.args)
                if not stage.cmd_set:
                    config.cmd = None
            case "CMD":
                config.cmd = self._command(ins.args)
                stage.cmd_set = True
            # LABEL, EXPOSE, VOLUME, ...: metadata that nothing here uses

    def _dirs(self, layers: list[str]) -> list[str]:
        return [self.store.layer_dir(layer) for layer in layers]

    def _command(self, args: str) -> list[str]:
        value = dockerfile.exec_or_shell(args)
        return value if isinstance(value, list) else [*self.stage.config.shell, value]

    async def _image(self, ref: str) -> BuiltImage:
        """The image a FROM or COPY --from names: an earlier stage, a base image of this build, or a ref."""
        if ref.lower() in self.stages:
            stage = self.stages[ref.lower()]
            return BuiltImage(list(stage.layers), copy.deepcopy(stage.config))
        if ref == "scratch":
            return BuiltImage([], ImageConfig())
        if ref in self.bases:
            image = self.bases[ref]
            if not await self.store.use(image.layers):
                raise DockerfileError(f"the layers of base image {ref!r} were garbage collected; run the app again")
            return image
        return await self.builder.resolve_base(ref, self.log, self.registry_auth)

    async def _from(self, ins: Instruction) -> None:
        ref, name = dockerfile.from_args(ins.args, self.global_args)
        image = await self._image(ref)
        self.stage = _Stage(list(image.layers), copy.deepcopy(image.config))
        self.stages[str(self.stage_count)] = self.stage
        self.stage_count += 1
        if name:
            self.stages[name.lower()] = self.stage

    def _arg(self, ins: Instruction) -> None:
        stage = self.stage
        for name, default in dockerfile.arg_declarations(ins.args, stage.variables if stage else self.global_args):
            if stage is None:
                value = self.build_args.get(name, default)
            else:  # a bare `ARG NAME` in a stage takes the value of the ARG before FROM
                value = self.build_args.get(name, default if default is not None else self.global_args.get(name))
            if value is not None:
                (stage.args if stage else self.global_args)[name] = value

    async def _layer(
        self, step: str, env: dict[str, str], inputs: object, produce: Callable[[str, list[str]], Awaitable[None]]
    ) -> None:
        """Add the layer for `step` to the stage: reuse it when it exists, else produce(upper_dir, lower_dirs)."""
        stage = self.stage
        config = stage.config
        key = {
            "version": LAYER_KEY_VERSION,
            "parent": stage.layers[-1] if stage.layers else "",
            "step": step,
            "env": env,
            "workdir": config.workdir,
            "user": config.user,
            "shell": config.shell,
            "inputs": inputs,
        }
        layer_id = _layer_id(key)
        async with self.store.building(layer_id, rebuild=self.force) as upper:
            if upper is None:
                self.log("=> cached\n")
            else:
                await produce(upper, self._dirs(stage.layers))
                self.built += 1
        stage.layers.append(layer_id)

    async def _run(self, ins: Instruction) -> None:
        stage = self.stage
        config = stage.config
        command = dockerfile.exec_or_shell(ins.args)
        argv = command if isinstance(command, list) else [*config.shell, command]
        env = {**stage.args, **config.env}

        async def produce(upper: str, lowers: list[str]) -> None:
            run_env = {"PATH": DEFAULT_PATH, "HOME": _home(LayerView(lowers), config.user), **env, **self.secret_env}
            tail = _Tail()

            def output(text: str) -> None:
                tail.add(text)
                self.log(text)

            code = await self.builder.run_step(
                lowers, upper, argv, run_env, config.workdir, config.user, output, self.volumes
            )
            if code != 0:
                raise BuildError(ins.text, tail.text(), f"failed with exit code {code}")

        inputs = {"secrets": self.secret_ids} if self.secret_ids else None
        if self.volumes:
            inputs = {**(inputs or {}), "volumes": self.volumes}
        await self._layer("RUN " + json.dumps(argv), env, inputs, produce)

    async def _workdir(self, path: str) -> None:
        config = self.stage.config
        config.workdir = posixpath.normpath(posixpath.join(config.workdir, path))
        workdir = config.workdir
        if await asyncio.to_thread(LayerView(self._dirs(self.stage.layers)).is_dir, workdir):
            return

        async def produce(upper: str, lowers: list[str]) -> None:
            await asyncio.to_thread(_make_dirs, LayerView([*lowers, upper]), upper, workdir)

        await self._layer(f"WORKDIR {workdir}", {}, None, produce)

    async def _copy(self, ins: Instruction) -> None:
        stage = self.stage
        variables = stage.variables
        sources, dest = dockerfile.copy_args(ins.args, variables)
        if ins.keyword == "ADD" and any(re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://|git@", s) for s in sources):
            raise DockerfileError("ADD from a URL is not supported; download it in a RUN step (curl, wget)")
        into_dir = dest.endswith("/") or dest.endswith("/.") or len(sources) > 1
        dest = posixpath.normpath(posixpath.join(stage.config.workdir, dest))
        view = LayerView(self._dirs(stage.layers))
        chmod = int(ins.flags["chmod"], 8) if ins.flags.get("chmod") else None
        chown = dockerfile.expand(ins.flags.get("chown", ""), variables)
        owner = await asyncio.to_thread(_owner, view, chown) if chown else (0, 0)
        from_ref = dockerfile.expand(ins.flags.get("from", ""), variables)
        if from_ref:
            image = await self._image(from_ref)
            plan = await asyncio.to_thread(
                _image_plan, LayerView(self._dirs(image.layers)), from_ref, sources, dest, into_dir, view
            )
            inputs: object = {"from": image.layers, "files": [d for d, _ in plan]}
        else:
            plan = await asyncio.to_thread(_context_plan, self.context, sources, dest, into_dir, view)
            inputs = await asyncio.to_thread(lambda: [(d, *_file_digest(h)) for d, h in plan])
        step = json.dumps([ins.keyword, sources, dest, chown, chmod])

        async def produce(upper: str, lowers: list[str]) -> None:
            await asyncio.to_thread(_write_plan, plan, upper, lowers, owner, chmod)
            self.log(f"copied {len(plan)} {'entry' if len(plan) == 1 else 'entries'}\n")

        await self._layer(step, variables, inputs, produce)


class _Tail:
    """The end of a step's output, for the error when it fails."""

    def __init__(self, limit: int = 64 * 1024):
        self.buf = ""
        self.limit = limit

    def add(self, text: str) -> None:
        self.buf = (self.buf + text)[-self.limit :]

    def text(self) -> str:
        return "\n".join(self.buf.rstrip("\n").splitlines()[-LOG_TAIL_LINES:])


# -- COPY and ADD ----------------------------------------------------------------


def _context_key(path: str) -> str:
    """COPY sources name context files relative to the context root: `/a.txt`, `./a.txt` and `a.txt` alike."""
    path = posixpath.normpath(path.lstrip("/"))
    return "" if path == "." else path


def _context_plan(
    context: dict[str, str], sources: list[str], dest: str, into_dir: bool, view: LayerView
) -> list[tuple[str, str]]:
    """(container path, host file) for each file COPY takes from the context."""
    matches: list[tuple[str, bool]] = []
    for source in sources:
        found = _match_context(context, _context_key(source))
        if not found:
            raise DockerfileError(f"{source!r} is not in the build context")
        matches += found
    into_dir = into_dir or len(matches) > 1 or any(is_dir for _, is_dir in matches) or view.is_dir(dest)
    plan: dict[str, str] = {}
    for path, is_dir in matches:
        if is_dir:  # like Docker: a directory's contents, not the directory itself
            for key, host in context.items():
                if not path or key.startswith(path + "/"):
                    plan[posixpath.join(dest, key[len(path) :].lstrip("/"))] = host
        else:
            plan[posixpath.join(dest, posixpath.basename(path)) if into_dir else dest] = context[path]
    # Context files are copied by content: a symlinked host file contributes its target.
    return sorted((d, os.path.realpath(h)) for d, h in plan.items())


def _match_context(context: dict[str, str], pattern: str) -> list[tuple[str, bool]]:
    """Context paths (files, or directories made of file paths) matching a COPY source, glob or not."""
    if not pattern:
        return [("", True)] if context else []
    want = pattern.split("/")
    found: dict[str, bool] = {}
    for key in context:
        parts = key.split("/")
        if len(parts) >= len(want) and all(fnmatchcase(p, w) for p, w in zip(parts, want)):
            path = "/".join(parts[: len(want)])
            found[path] = found.get(path, False) or len(parts) > len(want)
    return sorted(found.items())


def _image_plan(
    source: LayerView, ref: str, sources: list[str], dest: str, into_dir: bool, view: LayerView
) -> list[tuple[str, str]]:
    """(container path, host entry) for each entry COPY --from takes from another image."""
    into_dir = into_dir or view.is_dir(dest)
    plan = []
    for src in sources:
        path, hosts = source.resolve(posixpath.join("/", src))
        if not hosts:
            raise DockerfileError(f"{src!r} does not exist in {ref}")
        if os.path.isdir(hosts[0]):
            plan.append((dest, hosts[0]))
            plan += [(posixpath.join(dest, rel), host) for rel, host in source.walk(path)]
        else:
            plan.append((posixpath.join(dest, posixpath.basename(path)) if into_dir else dest, hosts[0]))
    return plan


def _file_digest(host: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    with open(host, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), stat.S_IMODE(os.stat(host).st_mode)


def _write_plan(
    plan: list[tuple[str, str]], upper: str, lowers: list[str], owner: tuple[int, int], chmod: int | None
) -> None:
    view = LayerView([*lowers, upper])
    uid, gid = owner
    for dest, host in plan:
        st = os.lstat(host)
        if stat.S_ISDIR(st.st_mode):
            target = upper + _make_dirs(view, upper, dest)
            os.chmod(target, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
            os.chown(target, uid, gid)
            continue
        target = upper + posixpath.join(_make_dirs(view, upper, posixpath.dirname(dest)), posixpath.basename(dest))
        if os.path.isdir(target) and not os.path.islink(target):
            raise DockerfileError(f"cannot copy a file over the directory {dest}")
        if os.path.lexists(target):
            os.unlink(target)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(host), target)
        else:
            shutil.copyfile(host, target)
            os.chmod(target, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chown(target, uid, gid, follow_symlinks=False)


def _make_dirs(view: LayerView, upper: str, path: str) -> str:
    """Make `path` a directory in the layer being built, following the image's symlinks.

    Returns the resolved container path. Directories the image already has keep their
    mode and owner (an upper-layer copy replaces them); new ones are root's, 0755.
    """
    resolved = posixpath.normpath(view.resolve(path)[0])
    cur = "/"
    for name in filter(None, resolved.split("/")):
        cur = posixpath.join(cur, name)
        mine = upper + cur
        if not os.path.isdir(mine) or os.path.islink(mine):
            hosts = view.entry(cur)
            like = os.stat(hosts[0]) if hosts and os.path.isdir(hosts[0]) else None
            os.mkdir(mine)
            os.chmod(mine, stat.S_IMODE(like.st_mode) if like else 0o755)
            os.chown(mine, like.st_uid if like else 0, like.st_gid if like else 0)
    return cur


# -- users and Python ----------------------------------------------------------------


def _etc_entry(view: LayerView, file: str, who: str) -> list[str] | None:
    """The /etc/passwd or /etc/group line (split) of a user or group given by name or number."""
    for line in (view.read_text(file) or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and (fields[0] == who or fields[2] == who):
            return fields
    return None


def _owner(view: LayerView, spec: str) -> tuple[int, int]:
    """uid and gid for COPY --chown=user[:group], looked up in the image's own /etc files."""
    user, _, group = spec.partition(":")
    entry = _etc_entry(view, "/etc/passwd", user)
    if entry is None and not user.isdigit():
        raise DockerfileError(f"--chown: no user {user!r} in the image's /etc/passwd")
    uid = int(user) if user.isdigit() else int(entry[2])
    if not group:
        return uid, int(entry[3]) if entry else uid
    group_entry = _etc_entry(view, "/etc/group", group)
    if group_entry is None and not group.isdigit():
        raise DockerfileError(f"--chown: no group {group!r} in the image's /etc/group")
    return uid, int(group) if group.isdigit() else int(group_entry[2])


def _home(view: LayerView, user: str | None) -> str:
    name = (user or "root").split(":")[0]
    if name in ("root", "0"):
        return "/root"
    entry = _etc_entry(view, "/etc/passwd", name)
    return entry[5] if entry and len(entry) > 5 and entry[5] else "/"


def detect_python_version(view: LayerView, path: str | None) -> str | None:
    """The "3.N" that `python` runs in the image, else the newest python3.N in the usual places."""
    for directory in (path or DEFAULT_PATH).split(":"):
        for name in ("python", "python3"):
            resolved, hosts = view.resolve(posixpath.join(directory or "/", name))
            if hosts:
                if m := _PYTHON.fullmatch(posixpath.basename(resolved)):
                    return m.group(1)
    found = [m.group(1) for d in ("/usr/local/bin", "/usr/bin") for n in view.listdir(d) if (m := _PYTHON.fullmatch(n))]
    return max(found, key=lambda v: int(v.split(".")[1]), default=None)
