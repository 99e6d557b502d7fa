"""The one check of a refusal: the exit code, exactly one stderr line ``binexport: error: ...``, no traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from typing import Any

PREFIX = "binexport: error: "


def _parts(result: Any) -> tuple[int, str, str, BaseException | None]:
    """(exit code, stdout, stderr, uncaught exception) of a Click ``Result``, a ``support.cli.Ran`` or a
    ``subprocess.CompletedProcess`` run with ``text=True``."""
    if isinstance(result, subprocess.CompletedProcess):
        return result.returncode, result.stdout or "", result.stderr or "", None
    exception = getattr(result, "exception", None)
    return result.exit_code, result.stdout, result.stderr, None if isinstance(exception, SystemExit) else exception


def assert_refused(result: Any, code: int = 2, match: str | Iterable[str] | None = None) -> str:
    """Assert that ``result`` is a refusal as users see it and return its stderr line (newline stripped).

    Exit ``code`` (2 bad input, 1 failed check); stderr is exactly one line, starting ``binexport: error: ``;
    no ``Traceback`` in either stream and no exception escaped the CLI. ``match``: a fragment (or several) the
    line must contain, compared as plain text (messages are full of brackets and dots, so not a regex).
    """
    exit_code, out, err, escaped = _parts(result)
    assert escaped is None, f"an exception escaped the CLI: {escaped!r}\n{out}{err}"
    assert exit_code == code, f"exit {exit_code}, expected {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in out and "Traceback" not in err, (out + err)[-4000:]
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one stderr line, got {len(lines)}: {err[-2000:]!r}"
    line = lines[0]
    assert line.startswith(PREFIX) and line[len(PREFIX) :].strip(), repr(line)
    for fragment in [match] if isinstance(match, str) else match or ():
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line
