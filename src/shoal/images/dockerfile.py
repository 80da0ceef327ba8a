"""Dockerfile instructions as the Modal client sends them (`Image.dockerfile_commands`).

Parsing splits the text into instructions; the argument helpers interpret one
instruction's arguments against the variables (ARG and ENV) in force at that
point of the build, following Docker's quoting and `$VAR` substitution rules.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Instructions that only record metadata nothing here uses.
IGNORED = {"LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "MAINTAINER"}
KEYWORDS = {"FROM", "RUN", "ENV", "ARG", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "COPY", "ADD", "SHELL"} | IGNORED
# Leading --flags each instruction accepts (--link, --network, --platform are accepted and ignored).
FLAGS: dict[str, set[str]] = {
    "FROM": {"platform"},
    "RUN": {"network"},
    "COPY": {"from", "chown", "chmod", "link"},
    "ADD": {"chown", "chmod", "link"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}

_CONTINUATION = re.compile(r"\\[ \t]*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?", re.S)


class DockerfileError(ValueError):
    """An instruction that cannot be parsed or is not supported."""

    def __init__(self, message: str, line: str = ""):
        super().__init__(message)
        self.line = line  # the instruction, when parsing found the error


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    args: str  # the text after the keyword and its flags
    text: str  # the whole instruction on one line, as logged
    flags: dict[str, str] = field(default_factory=dict)  # "--chown=1:1" -> {"chown": "1:1"}


def parse(commands: list[str]) -> list[Instruction]:
    """Instructions from command strings; a string may hold several lines and continue onto the next."""
    instructions = []
    pending: str | None = None
    for line in "\n".join(commands).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank and comment lines, also inside a continued instruction (as Docker does)
        piece = _CONTINUATION.split(line, maxsplit=1)
        if len(piece) == 2:  # ends with a backslash: joined with the next line, without the newline
            pending = (pending or "") + piece[0]
            continue
        instructions.append(_instruction((pending or "") + line))
        pending = None
    if pending is not None and pending.strip():
        instructions.append(_instruction(pending))
    return instructions


def _instruction(line: str) -> Instruction:
    keyword, rest = _first_word(line)
    keyword = keyword.upper()
    if keyword not in KEYWORDS:
        raise DockerfileError(f"Unknown Dockerfile instruction {keyword!r}", line.strip())
    text = f"{keyword} {rest}".strip()
    flags = {}
    while rest.startswith("--"):
        token, rest = _first_word(rest)
        name, _, value = token[2:].partition("=")
        if name not in FLAGS.get(keyword, set()):
            raise DockerfileError(f"{keyword} --{name} is not supported", text)
        flags[name] = value
    return Instruction(keyword, rest, text, flags)


def _first_word(text: str) -> tuple[str, str]:
    parts = text.strip().split(None, 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


# -- words and variables -------------------------------------------------------


def words(text: str, variables: Mapping[str, str]) -> list[str]:
    """Whitespace-separated words with quotes and escapes removed and variables substituted."""
    return _lex(text, variables, split=True)


def expand(text: str, variables: Mapping[str, str]) -> str:
    """One word: quotes and escapes removed, variables substituted, inner whitespace kept."""
    return "".join(_lex(text.strip(), variables, split=False))


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Variables substituted, nothing else (for the JSON array forms)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "$":
            value, i = _variable(text, i, variables)
            out.append(value)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _lex(text: str, variables: Mapping[str, str], split: bool) -> list[str]:
    out: list[str] = []
    word: list[str] | None = None
    quoted = False  # like a shell, an unquoted word that expands to nothing is no word at all
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if split and c in " \t\n":
            if word is not None and ("".join(word) or quoted):
                out.append("".join(word))
            word, quoted = None, False
            i += 1
            continue
        if word is None:
            word = []
        if c == "\\" and i + 1 < n:
            word.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise DockerfileError(f"unterminated single quote in: {text}")
            word.append(text[i + 1 : end])
            quoted = True
            i = end + 1
        elif c == '"':
            quoted = True
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$':
                    word.append(text[i + 1])
                    i += 2
                elif text[i] == "$":
                    value, i = _variable(text, i, variables)
                    word.append(value)
                else:
                    word.append(text[i])
                    i += 1
            if i >= n:
                raise DockerfileError(f"unterminated double quote in: {text}")
            i += 1
        elif c == "$":
            value, i = _variable(text, i, variables)
            word.append(value)
        else:
            word.append(c)
            i += 1
    if word is not None and ("".join(word) or quoted or not split):
        out.append("".join(word))
    return out


def _variable(text: str, i: int, variables: Mapping[str, str]) -> tuple[str, int]:
    """The value of the $NAME or ${NAME...} at text[i], and the index after it."""
    if text.startswith("${", i):
        depth, j = 1, i + 2
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth:
            raise DockerfileError(f"missing '}}' in: {text}")
        inner = text[i + 2 : j - 1]
        m = _BRACED.fullmatch(inner)
        if not m:
            raise DockerfileError(f"bad substitution ${{{inner}}} in: {text}")
        name, op, alternative = m.groups()
        value = variables.get(name)
        if op is None:
            return value or "", j
        is_set = bool(value) if op.startswith(":") else value is not None
        if op.endswith("-"):
            return (value or "") if is_set else expand(alternative, variables), j
        if op.endswith("+"):
            return expand(alternative, variables) if is_set else "", j
        if not is_set:  # ${NAME?message}
            raise DockerfileError(f"{name}: {expand(alternative, variables) or 'is not set'}")
        return value or "", j
    m = _NAME.match(text, i + 1)
    if not m:
        return "$", i + 1
    return variables.get(m.group(), ""), m.end()


# -- arguments of particular instructions ----------------------------------------


def env_pairs(args: str, variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """ENV (and LABEL) arguments: `k=v k2="v 2"` or the older `k the value`."""
    head = args.split(None, 1)
    if not head:
        raise DockerfileError("ENV needs a name and a value")
    if "=" not in head[0]:
        if len(head) < 2:
            raise DockerfileError(f"ENV {head[0]} needs a value (ENV name=value)")
        return [(head[0], expand(head[1], variables))]
    pairs = []
    for word in words(args, variables):
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise DockerfileError(f"ENV expects name=value, got {word!r}")
        pairs.append((name, value))
    return pairs


def arg_declarations(args: str, variables: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """ARG name[=default] ...: each name with its default, or None without one."""
    declarations: list[tuple[str, str | None]] = []
    for word in words(args, variables):
        name, eq, default = word.partition("=")
        if not _NAME.fullmatch(name):
            raise DockerfileError(f"ARG: invalid name {name!r}")
        declarations.append((name, default if eq else None))
    if not declarations:
        raise DockerfileError("ARG needs a name")
    return declarations


def exec_or_shell(args: str) -> list[str] | str:
    """RUN/CMD/ENTRYPOINT: the argv of the JSON exec form, or the command line of the shell form."""
    text = args.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None  # not JSON after all: Docker then treats it as a shell command
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return text


def shell_argv(args: str) -> list[str]:
    value = exec_or_shell(args)
    if not isinstance(value, list) or not value:
        raise DockerfileError(f'SHELL takes a JSON array, e.g. SHELL ["/bin/bash", "-c"], not: {args}')
    return value


def from_args(args: str, variables: Mapping[str, str]) -> tuple[str, str | None]:
    """FROM image [AS name]: the image reference and the stage name."""
    parts = words(args, variables)
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 3 and parts[1].upper() == "AS":
        return parts[0], parts[2]
    raise DockerfileError(f"FROM expects `image [AS name]`, got: {args}")


def copy_args(args: str, variables: Mapping[str, str]) -> tuple[list[str], str]:
    """COPY/ADD sources and destination, in the plain or the JSON array form."""
    value = exec_or_shell(args)
    parts = [substitute(v, variables) for v in value] if isinstance(value, list) else words(args, variables)
    if len(parts) < 2:
        raise DockerfileError(f"COPY needs at least one source and a destination, got: {args}")
    return parts[:-1], parts[-1]
