"""The CLI's Click plumbing: the group that turns every error into one line on stderr, and the option types.

Kept apart from the commands (``cli/__init__.py``) so those stay a list of thin commands.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from binexport.errors import BinexportError
from binexport.formats.onnx import MAX_FIXED_BATCH


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` as one printable line: newlines and control characters (from ORT messages, odd paths) escaped,
    undecodable bytes of POSIX paths (surrogates) as ``\\udcff``, so stderr gets exactly one line."""
    text = " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())
    out = "".join(
        c
        if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF
        else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )
    return out if len(out) <= limit else out[:limit] + "..."


def _error(message: str) -> None:
    click.echo(f"binexport: error: {one_line(message)}", err=True)


class Group(click.Group):
    """Turns binexport's own errors and Click's usage errors into one line on stderr and their exit code."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            names: list[str] = []
            c = e.ctx
            while c is not None and c.parent is not None:  # the root's name depends on how it was started
                names.insert(0, c.info_name or "")
                c = c.parent
            see = " ".join(["binexport", *names, "--help"])
            _error(f"{e.format_message()} (see '{see}')")
            sys.exit(e.exit_code)
        except click.ClickException as e:
            _error(e.format_message())
            sys.exit(e.exit_code)
        except click.Abort:
            _error("interrupted")
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # library warnings (torch, numpy) are not lines for the user
                return super().invoke(ctx)
        except BinexportError as e:
            _error(str(e))
            ctx.exit(e.exit_code)
        except MemoryError:
            _error(
                "out of memory: the input asks for more memory than this machine gives; it is either far "
                "larger than a WRN of the training code or malformed"
            )
            ctx.exit(2)
        except OSError as e:
            name = e.filename if e.filename is not None else ""
            _error(f"{os.fsdecode(name) if isinstance(name, bytes) else name}: {e.strerror or e}".removeprefix(": "))
            ctx.exit(2)


class PathType(click.Path):
    """A path that is not empty (``pack ""`` would otherwise mean the current folder)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, (str, bytes)) and not value:
            self.fail("the path is empty", param, ctx)
        return super().convert(value, param, ctx)


def path() -> PathType:
    """A non-empty path option or argument, as ``pathlib.Path``."""
    return PathType(path_type=Path)


def say_run_folder(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback of a model argument: where a training run folder is given, say on stderr which file is taken.

    The library resolves the folder itself (``formats.resolve``); a folder it can't resolve is left for the
    command to refuse in its one error line.
    """
    from binexport import formats

    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, Path) and v.is_dir():
            try:
                taken = formats.resolve(v)
            except BinexportError:
                continue
            log = " and the log.txt beside it" if (taken.parent / "log.txt").is_file() else ""
            click.echo(
                f"binexport: {one_line(str(v))}: a training run folder; using {one_line(taken.name)}{log}", err=True
            )
    return value


class Batch(click.ParamType):
    """``dynamic`` or a fixed batch of 1..MAX_FIXED_BATCH images."""

    name = "dynamic|N"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, int) or value == "dynamic":
            return value
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 9 or not 1 <= int(text) <= MAX_FIXED_BATCH:
            self.fail(f"{value!r}: expected 'dynamic' or a fixed batch of 1..{MAX_FIXED_BATCH} images", param, ctx)
        return int(text)


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan (Click's ranges let it through: every comparison with nan is False)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


class Threads(click.ParamType):
    """0 (one per core) or 1..``binexport.runtimes.max_threads()``: a few per CPU, refused beyond with one line."""

    name = "N"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from binexport.runtimes import THREADS_PER_CPU, max_threads

        text = str(value).strip()
        limit = max_threads()
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        if not (text.isascii() and text.isdigit() and len(text) <= 9 and int(text) <= limit):
            self.fail(
                f"{value!r}: expected 0..{limit} threads ({THREADS_PER_CPU} per CPU of this machine's "
                f"{os.cpu_count() or 1}; 0 = one per core)",
                param,
                ctx,
            )
        return int(text)
