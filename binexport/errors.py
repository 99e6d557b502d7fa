"""The few exception types binexport raises.

The CLI maps them to exit codes: ``InputError`` (bad input, exit 2) and
``CheckError`` (an artifact failed a check, exit 1). Messages say what was
expected, what was found and how to fix it, so they can be shown as one line.
"""

from __future__ import annotations


class BinexportError(Exception):
    """Base of every error binexport raises on purpose."""

    exit_code = 2


class InputError(BinexportError):
    """The input is missing, unreadable, of the wrong kind, or an option is wrong."""

    exit_code = 2


class FormatError(InputError):
    """A file claims a format and breaks its rules (bad magic, sizes, checksums)."""


class MissingExtraError(InputError):
    """An optional runtime (an extra, e.g. OpenVINO) is not installed, or is installed but does not load.

    The message names the runtime and the install command. ``--runtime all`` catches this type (never a
    message text) and goes on without that runtime, saying so where it is ``installed`` but broken.
    """

    def __init__(self, message: str, *, installed: bool = False) -> None:
        super().__init__(message)
        self.installed = installed


class OptionError(InputError):
    """An option the runtime can't honour for any file (``--device cuda`` of OpenVINO, a CUDA provider that fell
    back, ``--precision bf16`` on a CPU without it). The message names the option, so callers add no path to it."""


class Interrupted(BinexportError):
    """A signal (SIGINT, SIGTERM, SIGHUP) stopped a command that cleaned up first (``bench`` ends its workers).

    Exit code 128 + the signal's number, as a shell reports a process a signal ended.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class CheckError(BinexportError):
    """An artifact was produced or read but does not match what it must equal.

    ``problems`` lists every mismatch found, not just the first.
    """

    exit_code = 1

    def __init__(self, summary: str, problems: list[str] | None = None) -> None:
        self.summary = summary
        self.problems = list(problems or [])
        text = summary
        if self.problems:
            shown = "; ".join(self.problems[:5])
            more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
            text = f"{summary}: {shown}{more}"
        super().__init__(text)
