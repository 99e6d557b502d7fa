"""The one way tests run the CLI: ``invoke`` in-process (Click's runner), ``run_cli`` as a subprocess.

Both run it as a user would (standalone mode: exit codes and stderr as on a terminal); ``assert_refused`` in
``support.refusals`` takes the result of either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.paths import ROOT, pythonpath


def _args(args: tuple[object, ...]) -> list[str]:
    return [a if isinstance(a, str) else os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]


def invoke(
    *args: object,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    catch_exceptions: bool = True,
) -> Any:
    """``binexport ARGS`` in this process through ``click.testing.CliRunner``; returns Click's ``Result``
    (``exit_code``, ``stdout``, ``stderr``, ``output``). Exceptions are caught (a crash shows as ``exception``, which
    ``assert_refused`` rejects) unless ``catch_exceptions=False``, which lets pytest show the traceback."""
    from click.testing import CliRunner

    from binexport.cli import main

    runner = CliRunner(env=dict(env) if env else None)
    return runner.invoke(main, _args(args), input=input, catch_exceptions=catch_exceptions)


@dataclass(frozen=True)
class Ran:
    """What a ``binexport`` subprocess left: its exit code and both streams (text)."""

    code: int
    stdout: str
    stderr: str

    @property
    def exit_code(self) -> int:  # the name Click's Result uses, so one assert reads both
        return self.code

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    *args: object,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    preexec_fn: Callable[[], Any] | None = None,
    input: str | None = None,
    pythonpath_first: tuple[os.PathLike[str], ...] = (),
) -> Ran:
    """``python -m binexport.cli ARGS`` in a child process (this checkout first on PYTHONPATH, cwd the project
    root): for what only a real process shows (signals, rlimits, a fake module on the path, import side effects).

    ``env`` adds to (not replaces) this process's environment; ``pythonpath_first`` goes before this checkout.
    """
    full = {**os.environ, **(env or {}), "PYTHONPATH": pythonpath(*map(Path, pythonpath_first))}
    proc = subprocess.run(
        [sys.executable, "-m", "binexport.cli", *_args(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env=full,
        cwd=ROOT,
        check=False,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)
