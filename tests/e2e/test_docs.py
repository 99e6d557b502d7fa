"""Every ``binexport ...`` command line in README.md and docs/*.md names a real command, real options and valid
choices, checked by Click introspection, so the docs can't drift from the CLI.

Lines are taken from code blocks (``$ binexport ...`` or ``binexport ...`` at the start of a line, with ``\\``
continuations) and from inline code spans that start with ``binexport ``. Usage synopses are understood too:
``[--device auto|cpu|cuda]`` checks that ``--device`` exists and that each of ``auto``, ``cpu``, ``cuda`` is
one of its choices. Upper-case words (``CKPT``, ``DIR``, ``N``) are placeholders and are not checked.
"""

from __future__ import annotations

import re
import shlex

import click
import pytest
from support.paths import ROOT

from binexport.cli import main

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE = re.compile(r"(?<!`)`(binexport [^`]+)`(?!`)")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_.=/-]*(\.\.\.)?$")


def command_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` for every binexport command line of a Markdown text."""
    found: list[tuple[int, str]] = []
    in_code, pending, start = False, "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            in_code, pending = not in_code, ""
            continue
        if in_code:
            body = line.strip()
            if pending:
                body = pending + " " + body
            else:
                body = body[2:].lstrip() if body.startswith("$ ") else body
                if not body.startswith("binexport "):
                    continue
                start = no
            pending = ""
            if body.endswith("\\"):
                pending = body[:-1].rstrip()
                continue
            found.append((start, body))
        else:
            found += [(no, m.group(1)) for m in _INLINE.finditer(line)]
    return found


def _tokens(cmd: str) -> list[str]:
    cmd = cmd.replace("\\|", "|")
    try:
        return shlex.split(cmd, comments=True)
    except ValueError:  # an unbalanced quote in a synopsis: plain words will do
        return cmd.split("#", 1)[0].split()


def _strip(token: str) -> str:
    return token.strip("[](){},;")


def problems(cmd: str) -> list[str]:
    """What in ``cmd`` the CLI does not have; empty when every command, option and choice exists."""
    tokens = _tokens(cmd)[1:]
    if not tokens:
        return []
    if _strip(tokens[0]).startswith("-"):
        known = {o for p in main.params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
        return [f"binexport has no option {_strip(tokens[0])}"] if _strip(tokens[0]) not in known else []
    name = _strip(tokens[0])
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        return []  # output such as "binexport demo: files go to ...", not a command line
    command = main.commands.get(name)
    if command is None:
        return [f"no command {name!r} (commands: {', '.join(sorted(main.commands))})"]
    options = {o: p for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    options.update({"-h": None, "--help": None})  # type: ignore[dict-item]
    out: list[str] = []
    rest = tokens[1:]
    i = 0
    while i < len(rest):
        word = _strip(rest[i])
        i += 1
        if not word.startswith("-") or word in ("-", "--") or re.fullmatch(r"-\d.*", word):
            continue
        flag, _, inline_value = word.partition("=")
        if flag not in options:
            out.append(f"{name} has no option {flag}")
            continue
        param = options[flag]
        if param is None or param.is_flag or param.count:
            continue
        value = inline_value or (_strip(rest[i]) if i < len(rest) else "")
        i += 0 if inline_value else 1
        out += _bad_choices(name, flag, param, value)
    return out


def _bad_choices(name: str, flag: str, param: click.Option, value: str) -> list[str]:
    """Alternatives of ``value`` (``a|b|c``) that are neither choices of ``param`` nor placeholders."""
    if isinstance(param.type, click.Choice):
        allowed = [str(c) for c in param.type.choices]
        fold = not param.type.case_sensitive
    elif param.metavar and "|" in param.metavar and not any(_PLACEHOLDER.match(m) for m in param.metavar.split("|")):
        allowed, fold = param.metavar.split("|"), False  # a closed list spelled in the metavar (--format packed|bwn)
    else:
        return []
    norm = (lambda s: s.lower()) if fold else (lambda s: s)
    ok = {norm(a) for a in allowed}
    return [
        f"{name} {flag}: {alt!r} is not one of {', '.join(allowed)}"
        for alt in (a.strip() for a in value.split("|"))
        if alt and not _PLACEHOLDER.match(alt) and not alt.startswith(("-", "$", "~", "/", ".")) and norm(alt) not in ok
    ]


def _all_lines() -> list[tuple[str, int, str]]:
    return [(doc.relative_to(ROOT).as_posix(), no, cmd) for doc in DOCS for no, cmd in command_lines(doc.read_text())]


@pytest.mark.parametrize(("doc", "line", "cmd"), _all_lines(), ids=lambda v: str(v)[:60])
def test_every_documented_command_line_exists(doc: str, line: int, cmd: str) -> None:
    assert problems(cmd) == [], f"{doc}:{line}: {cmd}"


def test_the_docs_hold_many_command_lines_of_every_command() -> None:
    lines = _all_lines()
    assert len(lines) >= 30
    used = {_strip(_tokens(cmd)[1]) for _, _, cmd in lines if len(_tokens(cmd)) > 1}
    assert {"inspect", "pack", "to-onnx", "verify", "bench", "demo"} <= used


def test_the_checker_catches_what_it_should() -> None:
    assert problems("binexport pack CKPT --format bwn --force") == []
    assert problems("binexport to-onnx INPUT [--weights 1-bit|float32|float16] [--batch dynamic|N]") == []
    assert problems("binexport verify A (--dataset CIFAR100|cifar10 [--data-root DIR] | --images DIR)") == []
    assert problems("binexport --version") == []
    assert problems("binexport packk CKPT")[0].startswith("no command 'packk'")
    assert problems("binexport pack CKPT --no-such-option") == ["pack has no option --no-such-option"]
    assert problems("binexport pack CKPT --format onnx") == [
        "pack --format: 'onnx' is not one of packed, bwn, safetensors"
    ]
    assert problems("binexport verify A --device auto|gpu") == ["verify --device: 'gpu' is not one of auto, cuda, cpu"]
    assert problems("binexport to-onnx IN --weights=int4")[0].startswith("to-onnx --weights: 'int4'")


def test_command_lines_are_found_in_code_blocks_and_inline_code() -> None:
    text = (
        "Run `binexport inspect FILE` first.\n```\n$ binexport pack CKPT \\\n    --format bwn\n"
        "binexport: error: x\n```\n`binexport.load` is the API.\n"
    )
    assert command_lines(text) == [(1, "binexport inspect FILE"), (3, "binexport pack CKPT --format bwn")]
