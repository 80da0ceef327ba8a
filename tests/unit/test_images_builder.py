"""The builder with real layers: steps run in overlay mounts of the host's own sh and coreutils."""

import asyncio
import os
import stat

import pytest
from test_images_support import chroot_run_step, host_tools_base, require

from shoal.images.builder import Builder, BuildError
from shoal.images.layers import LayerView, is_opaque
from shoal.images.spec import BuiltImage
from shoal.images.store import LayerStore


class Env:
    def __init__(self, root):
        self.store = LayerStore(str(root / "store"))
        self.files = root / "context"
        self.files.mkdir()
        self.resolved: list[str] = []
        self.builder = Builder(self.store, chroot_run_step, self._resolve)
        self.base: BuiltImage | None = None
        self.logs: list[str] = []

    async def _resolve(self, ref, log, auth):
        self.resolved.append(ref)
        return self.base

    def file(self, name: str, content: str, mode: int = 0o644) -> str:
        path = self.files / name.replace("/", "__")
        path.write_text(content)
        path.chmod(mode)
        return str(path)

    async def build(self, commands, context=None, **kwargs) -> BuiltImage:
        self.logs = []
        return await self.builder.build(
            commands, bases={"base": self.base}, context=context or {}, log=self.logs.append, **kwargs
        )

    def view(self, image: BuiltImage) -> LayerView:
        return LayerView([self.store.layer_dir(layer) for layer in image.layers])

    def read(self, image: BuiltImage, path: str) -> str:
        return self.view(image).read_text(path)


@pytest.fixture
async def env(tmp_path):
    require("unshare", "mount", "ldd")
    e = Env(tmp_path)
    e.base = await host_tools_base(e.store)
    return e


async def test_run_changes_become_an_upper_dir(env):
    image = await env.build(
        [
            "FROM base",
            "RUN echo hi > /new.txt && rm /data/old.txt && rm -r /data/sub && mkdir /data/sub && echo x > /data/sub/f",
        ]
    )
    assert image.built == 1 and image.layers[:-1] == env.base.layers
    upper = env.store.layer_dir(image.layers[-1])
    assert open(f"{upper}/new.txt").read() == "hi\n"
    whiteout = os.lstat(f"{upper}/data/old.txt")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert is_opaque(f"{upper}/data/sub") and os.listdir(f"{upper}/data/sub") == ["f"]
    view = env.view(image)
    assert view.listdir("/data") == ["sub"]
    assert view.listdir("/data/sub") == ["f"]
    assert env.logs[0] == "=> FROM base\n" and env.logs[1].startswith("=> RUN echo hi")


async def test_same_inputs_are_cache_hits(env, tmp_path):
    a = env.file("a.txt", "one")
    commands = ["FROM base", "ENV A=1", "RUN echo 1 > /one", "COPY a.txt /a.txt", "RUN echo 2 > /two"]
    first = await env.build(commands, {"a.txt": a})
    assert first.built == 3 and len(first.layers) == 4
    again = await env.build(commands, {"a.txt": a})
    assert again.built == 0 and again.layers == first.layers
    assert env.logs.count("=> cached\n") == 3
    assert again.config == first.config


async def test_a_change_invalidates_its_layer_and_those_after_it(env):
    a = env.file("a.txt", "one")
    base = ["FROM base", "ENV A=1", "RUN echo 1 > /one", "COPY a.txt /a.txt", "RUN echo 2 > /two"]
    first = await env.build(base, {"a.txt": a})
    _, one, copied, two = first.layers

    changed = await env.build([*base[:-1], "RUN echo 3 > /two"], {"a.txt": a})
    assert changed.layers[:3] == [first.layers[0], one, copied] and changed.layers[3] != two
    assert changed.built == 1

    env_changed = await env.build(["FROM base", "ENV A=2", *base[2:]], {"a.txt": a})
    assert not {one, copied, two} & set(env_changed.layers)

    content = await env.build(base, {"a.txt": env.file("a2.txt", "two")})
    assert content.layers[1] == one and content.layers[2] != copied and content.layers[3] != two
    assert content.built == 2

    mode = await env.build(base, {"a.txt": env.file("a3.txt", "one", mode=0o755)})
    assert mode.layers[2] not in (copied, content.layers[2])

    # A different host path with the same content and mode is the same layer.
    same = await env.build(base, {"a.txt": env.file("elsewhere.txt", "one")})
    assert same.layers == first.layers and same.built == 0


async def test_build_args_count_only_when_declared(env):
    commands = ["FROM base", "ARG V=default", "RUN echo $V > /v"]
    plain = await env.build(commands)
    assert env.read(plain, "/v") == "default\n"
    other = await env.build(commands, build_args={"V": "given"})
    assert env.read(other, "/v") == "given\n" and other.layers[-1] != plain.layers[-1]
    undeclared = await env.build(commands, build_args={"OTHER": "x"})
    assert undeclared.layers == plain.layers


async def test_failing_run_reports_command_and_tail_and_caches_nothing(env):
    ok = ["FROM base", "RUN echo fine > /fine"]
    failing = "i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); done; echo partial > /partial; exit 3"
    with pytest.raises(BuildError) as info:
        await env.build([*ok, f"RUN {failing}", "RUN echo never"])
    error = info.value
    assert error.command == f"RUN {failing}"
    assert error.log_tail.splitlines() == [f"line{i}" for i in range(10, 40)]
    assert "exit code 3" in str(error) and failing in str(error) and "line39" in str(error)
    assert not any("never" in line for line in env.logs)
    layers = os.listdir(env.store.layer_dir(""))
    assert len(layers) == 2  # the base and the RUN that worked
    assert os.listdir(os.path.join(env.store.root, "tmp")) == []
    rerun = await env.build(ok)
    assert rerun.built == 0


async def test_force_build_rebuilds_every_layer_under_the_same_ids(env):
    commands = ["FROM base", "RUN date +%s%N > /stamp", "RUN echo x > /x"]
    first = await env.build(commands)
    stamp = env.read(first, "/stamp")
    forced = await env.build(commands, force_build=True)
    assert forced.layers == first.layers and forced.built == 2
    assert env.read(forced, "/stamp") != stamp
    assert "=> cached\n" not in env.logs


async def test_copy_from_the_context(env):
    context = {
        "/.requirements.txt": env.file("req", "requests\n"),
        "src/pkg/a.py": env.file("a", "A"),
        "src/pkg/sub/b.py": env.file("b", "B"),
        "src/run.sh": env.file("run", "#!/bin/sh\n", mode=0o755),
        "data.csv": env.file("csv", "1,2"),
        "notes.md": env.file("md", "# notes"),
    }
    image = await env.build(
        [
            "FROM base",
            "COPY /.requirements.txt /.requirements.txt",
            "COPY src /app/",
            "COPY *.csv *.md /files/",
            "COPY ./data.csv /single",
            "WORKDIR /w",
            "COPY src/pkg/a.py rel.py",
            "COPY --chown=app:staff src/run.sh /home/app/",
            "COPY data.csv /bin/data.csv",
            "COPY src/pkg/a.py /root/x/a.py",
            "ENV DEST=/everything",
            'COPY ["src/pkg", "${DEST}/pkg"]',
            "COPY . /all",
        ],
        context,
    )
    view = env.view(image)
    read = lambda p: view.read_text(p)  # noqa: E731
    assert read("/.requirements.txt") == "requests\n"
    assert (read("/app/pkg/a.py"), read("/app/pkg/sub/b.py"), read("/app/run.sh")) == ("A", "B", "#!/bin/sh\n")
    assert view.listdir("/files") == ["data.csv", "notes.md"]
    assert read("/single") == "1,2"
    assert read("/w/rel.py") == "A"
    run = view.resolve("/home/app/run.sh")[1][0]
    assert (os.stat(run).st_uid, os.stat(run).st_gid, stat.S_IMODE(os.stat(run).st_mode)) == (1000, 50, 0o755)
    # /bin is a symlink to usr/bin in the image: the copy follows it.
    copy_layer = env.store.layer_dir(image.layers[8])
    assert os.path.isfile(f"{copy_layer}/usr/bin/data.csv") and not os.path.exists(f"{copy_layer}/bin")
    # Existing directories keep their mode in the new layer.
    root_copy = env.store.layer_dir(image.layers[9])
    assert stat.S_IMODE(os.stat(f"{root_copy}/root").st_mode) == 0o700
    assert read("/everything/pkg/sub/b.py") == "B"
    assert [rel for rel, _ in view.walk("/all") if not view.is_dir("/all/" + rel)] == [
        ".requirements.txt", "data.csv", "notes.md", "src/pkg/a.py", "src/pkg/sub/b.py", "src/run.sh",
    ]  # fmt: skip

    with pytest.raises(BuildError, match="'missing.txt' is not in the build context"):
        await env.build(["FROM base", "COPY missing.txt /x"], context)
    with pytest.raises(BuildError, match="ADD from a URL is not supported"):
        await env.build(["FROM base", "ADD https://example.com/x.tgz /x"], context)


async def test_metadata_instructions_set_the_config(env):
    image = await env.build(
        [
            "FROM base",
            "ARG V=1",
            "ENV A=a B=${V}b",
            "ENV C $A-$B",
            "WORKDIR app",
            "WORKDIR sub",
            "USER app",
            'SHELL ["/bin/sh", "-ec"]',
            'RUN echo "$A $B $C $V $HOME $(id -u)" > /tmp/vals && pwd >> /tmp/vals',
            "LABEL org.example=yes",
            "EXPOSE 8000",
            "VOLUME /data",
            "ENTRYPOINT tini -- run",
            'CMD ["serve"]',
        ]
    )
    c = image.config
    assert c.env == {"PATH": env.base.config.env["PATH"], "A": "a", "B": "1b", "C": "a-1b"}
    assert (c.workdir, c.user, c.shell) == ("/app/sub", "app", ["/bin/sh", "-ec"])
    assert (c.entrypoint, c.cmd) == (["/bin/sh", "-ec", "tini -- run"], ["serve"])
    assert env.view(image).is_dir("/app/sub")
    assert env.read(image, "/tmp/vals") == "a 1b a-1b 1 /home/app 1000\n/app/sub\n"

    child = await env.builder.build(["FROM base", 'ENTRYPOINT ["x"]'], bases={"base": image}, context={})
    assert child.config.entrypoint == ["x"] and child.config.cmd is None  # an inherited CMD is reset


async def test_bases_chain_and_other_refs_are_resolved(env):
    first = await env.build(["FROM base", "ENV X=1", "RUN echo one > /one"])
    second = await env.builder.build(["FROM base", "RUN cat /one > /two"], bases={"base": first}, context={})
    assert second.layers[:-1] == first.layers and second.config.env["X"] == "1"
    assert env.read(second, "/two") == "one\n"
    assert env.resolved == []

    resolved = await env.builder.build(["FROM python:3.11.12-slim-bookworm", "RUN echo > /r"], bases={}, context={})
    assert env.resolved == ["python:3.11.12-slim-bookworm"] and resolved.layers[0] == env.base.layers[0]


async def test_multi_stage_copy_from(env):
    image = await env.build(
        [
            "FROM base AS build",
            "RUN mkdir -p /out/d && echo made > /out/d/f && ln -s f /out/d/link && chmod 700 /out/d",
            "FROM base",
            "COPY --from=build /out /result",
            "COPY --from=0 /out/d/f /single",
        ]
    )
    assert len(image.layers) == 3  # the base and the two copies; nothing of the first stage
    view = env.view(image)
    assert view.read_text("/result/d/f") == "made\n" and view.read_text("/single") == "made\n"
    assert os.readlink(view.entry("/result/d/link")[0]) == "f"
    assert stat.S_IMODE(os.stat(view.entry("/result/d")[0]).st_mode) == 0o700
    with pytest.raises(BuildError, match="'/nope' does not exist in build"):
        await env.build(["FROM base AS build", "FROM base", "COPY --from=build /nope /x"])


async def test_python_version_is_detected(env):
    assert (await env.build(["FROM base", "ENV X=1"])).config.python_version == "3.9"
    newer = await env.build(
        [
            "FROM base",
            "RUN mkdir -p /usr/local/bin && touch /usr/local/bin/python3.12 && ln -s python3.12 /usr/local/bin/python",
        ]
    )
    assert newer.config.python_version == "3.12"


async def test_concurrent_builds_share_layers(env):
    commands = ["FROM base", "RUN sleep 0.2; echo 1 > /one", "RUN echo 2 > /two"]
    a, b = await asyncio.gather(env.build(commands), env.build(commands))
    assert a.layers == b.layers and a.built + b.built == 2


async def test_errors_name_the_instruction(env):
    with pytest.raises(BuildError, match="Unknown Dockerfile instruction 'FORM'") as info:
        await env.build(["FROM base", "FORM x"])
    assert info.value.command == "FORM x"
    with pytest.raises(BuildError, match="no FROM"):
        await env.build(["ARG X=1"])
    with pytest.raises(BuildError, match="RUN comes before the first FROM"):
        await env.build(["RUN echo"])
    with pytest.raises(BuildError, match="no user 'ghost'"):
        await env.build(["FROM base", "COPY --chown=ghost a /a"], {"a": env.file("a", "a")})


async def test_run_function_layer_is_what_the_function_wrote_and_is_cached_by_inputs(env):
    runs = []

    async def run(image_dirs, upper):
        runs.append(image_dirs)
        os.makedirs(os.path.join(upper, "opt"))
        with open(os.path.join(upper, "opt", "baked"), "w") as f:
            f.write("baked")

    image = await env.builder.run_function(env.base, {"definition": "def f(): ..."}, run)
    assert image.layers[:-1] == env.base.layers and image.built == 1
    assert env.read(image, "/opt/baked") == "baked"
    again = await env.builder.run_function(env.base, {"definition": "def f(): ..."}, run)
    assert again.layers == image.layers and again.built == 0 and len(runs) == 1
    other = await env.builder.run_function(env.base, {"definition": "def g(): ..."}, run)
    assert other.layers[-1] != image.layers[-1] and len(runs) == 2


async def test_failing_run_function_caches_nothing(env):
    async def fail(image_dirs, upper):
        raise BuildError("run_function(f)", reason="failed: boom")

    for _ in range(2):
        with pytest.raises(BuildError, match="boom"):
            await env.builder.run_function(env.base, {"definition": "def f(): raise"}, fail)


async def test_secret_env_reaches_run_steps_and_keys_layers_by_id(env):
    steps = ["FROM base", "RUN echo $TOKEN > /token"]
    first = await env.build(steps, secret_env={"TOKEN": "one"}, secret_ids=["st-a"])
    assert env.read(first, "/token").strip() == "one"
    same_id = await env.build(steps, secret_env={"TOKEN": "two"}, secret_ids=["st-a"])
    assert same_id.layers == first.layers
    other_id = await env.build(steps, secret_env={"TOKEN": "two"}, secret_ids=["st-b"])
    assert env.read(other_id, "/token").strip() == "two"
    plain = await env.build(steps)
    assert plain.layers[-1] not in (first.layers[-1], other_id.layers[-1])


async def test_volumes_reach_run_steps_and_key_their_layers(env):
    seen = []

    async def run_step(*args):
        seen.append(args[-1])
        return await chroot_run_step(*args)

    env.builder.run_step = run_step
    steps = ["FROM base", "RUN echo hi > /hi"]
    plain = await env.build(steps)
    volumes = [("vo-a", "models", "/cache", False)]
    mounted = await env.build(steps, volumes=volumes)
    assert seen == [[], volumes]
    assert mounted.layers[-1] != plain.layers[-1]
    other = await env.build(steps, volumes=[("vo-b", "models", "/cache", False)])
    assert other.layers[-1] != mounted.layers[-1]  # which volume counts, not what it holds
    again = await env.build(steps, volumes=volumes)
    assert again.layers == mounted.layers and len(seen) == 3  # reused
