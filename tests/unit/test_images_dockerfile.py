import pytest

from shoal.images import dockerfile as d
from shoal.images.dockerfile import DockerfileError


def kinds(commands):
    return [(i.keyword, i.args) for i in d.parse(commands)]


def test_parse_one_instruction_per_string():
    assert kinds(["FROM base", "RUN python -m pip install x", "ENV A=1"]) == [
        ("FROM", "base"),
        ("RUN", "python -m pip install x"),
        ("ENV", "A=1"),
    ]


def test_parse_lines_comments_blanks_and_case():
    text = '# syntax=docker/dockerfile:1\nfrom base\n\n  # a comment\nrun echo hi\n\tCmd ["a"]\n'
    assert kinds([text]) == [("FROM", "base"), ("RUN", "echo hi"), ("CMD", '["a"]')]


def test_continuations_join_lines_and_list_items():
    # Image.poetry_install_from_file continues a RUN across list items, with a space after the backslash.
    commands = ["RUN cd /tmp/poetry && \\ ", "  poetry config virtualenvs.create false && \\ ", "poetry install"]
    (ins,) = d.parse(commands)
    assert ins.args == "cd /tmp/poetry &&   poetry config virtualenvs.create false && poetry install"
    text = "RUN apt-get update && \\\n    # comment lines inside are dropped\n    apt-get install -y curl"
    assert kinds([text]) == [("RUN", "apt-get update &&     apt-get install -y curl")]
    assert kinds(["RUN echo a \\"]) == [("RUN", "echo a")]  # a trailing backslash at the very end


def test_flags():
    (ins,) = d.parse(["COPY --chown=app:staff --chmod=644 a b /dst/"])
    assert ins.flags == {"chown": "app:staff", "chmod": "644"}
    assert ins.args == "a b /dst/"
    assert ins.text == "COPY --chown=app:staff --chmod=644 a b /dst/"
    (ins,) = d.parse(["COPY --from=ghcr.io/astral-sh/uv:0.4 /uv /.uv/uv"])
    assert ins.flags == {"from": "ghcr.io/astral-sh/uv:0.4"}
    assert d.parse(["FROM --platform=linux/amd64 x AS y"])[0].args == "x AS y"


def test_unknown_instruction_and_flag_are_named():
    with pytest.raises(DockerfileError, match="Unknown Dockerfile instruction 'FORM'") as info:
        d.parse(["FROM base", "FORM  x"])
    assert info.value.line == "FORM  x"
    with pytest.raises(DockerfileError, match="RUN --mount is not supported"):
        d.parse(["RUN --mount=type=cache,target=/root/.cache pip install x"])
    with pytest.raises(DockerfileError, match="ONBUILD"):
        d.parse(["ONBUILD RUN x"])


def test_metadata_instructions_parse():
    assert [i.keyword for i in d.parse(['LABEL a="b c"', "EXPOSE 80/tcp", 'VOLUME ["/data"]'])] == [
        "LABEL",
        "EXPOSE",
        "VOLUME",
    ]


def test_substitution_forms():
    v = {"A": "a", "EMPTY": "", "B": "b"}
    assert d.words("$A ${A} x${A}y ${B}/${A}", v) == ["a", "a", "xay", "b/a"]
    assert d.words("${MISSING} $MISSING", v) == []  # unset vanishes: empty words are dropped
    assert d.expand("[${MISSING}]", v) == "[]"
    assert d.expand("${MISSING:-dflt} ${EMPTY:-dflt} ${EMPTY-dflt} ${A:-dflt}", v) == "dflt dflt  a"
    assert d.expand("${A:+alt} ${EMPTY:+alt} ${MISSING:+alt} ${EMPTY+alt}", v) == "alt   alt"
    assert d.expand("${MISSING:-$A/x}", v) == "a/x"
    assert d.expand("$ $1 cost\\$5 a$", v) == "$ $1 cost$5 a$"
    with pytest.raises(DockerfileError, match="MISSING: needed"):
        d.expand("${MISSING:?needed}", v)
    with pytest.raises(DockerfileError, match="missing"):
        d.expand("${A", v)


def test_quotes_and_escapes():
    v = {"A": "a"}
    assert d.words("\"x $A y\" 'x $A y' x\\ y", v) == ["x a y", "x $A y", "x y"]
    assert d.words("\"say \\\"hi\\\"\" 'it'\\''s'", v) == ['say "hi"', "it's"]
    assert d.words('a"b c"d', v) == ["ab cd"]
    with pytest.raises(DockerfileError, match="unterminated"):
        d.words("'open", v)


def test_env_forms():
    v = {"PATH": "/usr/bin", "A": "old"}
    assert d.env_pairs("PATH=/opt/bin:$PATH", v) == [("PATH", "/opt/bin:/usr/bin")]
    assert d.env_pairs('A=1 B="two words" C=${A}x', v) == [("A", "1"), ("B", "two words"), ("C", "oldx")]
    assert d.env_pairs("MY_NAME John  Doe", v) == [("MY_NAME", "John  Doe")]
    assert d.env_pairs("GREETING 'hi $A'", v) == [("GREETING", "hi $A")]
    assert d.env_pairs("EMPTY=", v) == [("EMPTY", "")]
    with pytest.raises(DockerfileError):
        d.env_pairs("LONELY", v)
    with pytest.raises(DockerfileError):
        d.env_pairs("A=1 junk", v)


def test_arg_declarations():
    assert d.arg_declarations("VERSION", {}) == [("VERSION", None)]
    assert d.arg_declarations("V=1.0 W X=${V:-2}", {"V": "3"}) == [("V", "1.0"), ("W", None), ("X", "3")]
    with pytest.raises(DockerfileError):
        d.arg_declarations("9bad=1", {})


def test_exec_and_shell_forms():
    assert d.exec_or_shell('["python", "-c", "print(1)"]') == ["python", "-c", "print(1)"]
    assert d.exec_or_shell("echo $HOME && ls") == "echo $HOME && ls"
    assert d.exec_or_shell("[ -f /x ] && echo yes") == "[ -f /x ] && echo yes"  # not JSON: shell form
    assert d.exec_or_shell('["a", 1]') == '["a", 1]'
    assert d.shell_argv('["/bin/bash", "-o", "pipefail", "-c"]') == ["/bin/bash", "-o", "pipefail", "-c"]
    with pytest.raises(DockerfileError, match="JSON"):
        d.shell_argv("/bin/bash -c")


def test_from_args():
    assert d.from_args("python:3.11.12-slim-bookworm", {}) == ("python:3.11.12-slim-bookworm", None)
    assert d.from_args("base AS Builder", {}) == ("base", "Builder")
    assert d.from_args("base as b", {}) == ("base", "b")
    assert d.from_args("python:${V}-slim", {"V": "3.11"}) == ("python:3.11-slim", None)
    with pytest.raises(DockerfileError):
        d.from_args("a b", {})


def test_copy_args():
    v = {"DEST": "/app"}
    assert d.copy_args("a.txt b/ $DEST/", v) == (["a.txt", "b/"], "/app/")
    assert d.copy_args('["with space.txt", "${DEST}/x"]', v) == (["with space.txt"], "/app/x")
    assert d.copy_args("'my file' /dst", v) == (["my file"], "/dst")
    with pytest.raises(DockerfileError):
        d.copy_args("only-one", v)
