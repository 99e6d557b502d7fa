"""OpenVINO compiled apart: the child's error type crosses the process boundary as its exit code, not its text."""

from __future__ import annotations

import sys

import pytest

from binexport.errors import InputError, MissingExtraError, OptionError
from binexport.runtimes.openvino_apart import EXIT_BROKEN, EXIT_NOT_INSTALLED, EXIT_OPTION, compile_apart


def _child(code: int, line: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; print({line!r}, file=sys.stderr); sys.exit({code})"]


@pytest.mark.parametrize(
    ("code", "error", "installed"),
    [
        (EXIT_NOT_INSTALLED, MissingExtraError, False),
        (EXIT_BROKEN, MissingExtraError, True),
        (EXIT_OPTION, OptionError, None),
    ],
)
def test_the_exit_code_gives_the_error_type(code: int, error: type, installed: bool | None) -> None:
    # the same text for every code: only the code may decide the type
    with pytest.raises(error, match="^--precision bf16: whatever the child said$") as e:
        compile_apart("m.onnx", command=_child(code, "--precision bf16: whatever the child said"))
    if installed is not None:
        assert e.value.installed is installed


def test_a_file_error_is_a_plain_input_error() -> None:
    with pytest.raises(InputError, match="^OpenVINO cannot open it") as e:
        compile_apart("m.onnx", command=_child(2, "OpenVINO cannot open it (bad graph)"))
    assert type(e.value) is InputError
