"""OpenVINO compiles a file once in a process of its own, so a graph that crashes it ends that process only.

``verify`` runs OpenVINO in its own process; before it does, :func:`compile_apart`
compiles the file in a child (under the address-space cap a bench worker
timing one image gets) and turns the child's crash, timeout or one-line error
into binexport's errors. The error's type crosses the process boundary as the
child's exit code, never as message text.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from binexport.errors import InputError, MissingExtraError, OptionError

#: The child's exit codes beyond 0 and 2 (a file OpenVINO can't compile): what its error was.
EXIT_NOT_INSTALLED = 3
EXIT_BROKEN = 4
EXIT_OPTION = 5

#: How long a compile in a separate process (:func:`compile_apart`) may take: WRN-20-10 compiles in about 2 s.
COMPILE_TIMEOUT_S = 300.0


def compile_apart(
    path: str,
    threads: int = 0,
    compute: str = "f32",
    timeout: float = COMPILE_TIMEOUT_S,
    command: list[str] | None = None,
    bounds: dict[str, int] | None = None,
) -> None:
    """Compile ``path`` once in a process of its own, so that an OpenVINO crash (a SIGSEGV on a crafted graph)
    ends that process, not the caller: ``verify`` calls it before compiling in its own process.

    Raises:
        MissingExtraError: OpenVINO is missing or broken (the child said so by its exit code).
        OptionError: an option OpenVINO can't honour here (``--precision bf16`` on a CPU without it).
        InputError: the compile failed (its one-line reason), crashed (the signal), or ran past ``timeout``.

    ``bounds`` (the graph's ``OnnxBounds`` as a dict) caps the child's address space as a bench worker's
    (:func:`binexport.runtimes.memory.limit_address_space`, one image). ``command`` replaces the child's command
    line (tests).
    """
    import signal
    import subprocess
    import sys

    cmd = command or [sys.executable, "-m", __name__, path, str(threads), compute]
    if command is None and bounds is not None:
        import json

        cmd.append(json.dumps(bounds))
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise InputError(
            f"OpenVINO did not compile it within {timeout:.0f} s (in a separate process, now stopped); "
            "expected a binexport WRN export"
        ) from None
    if proc.returncode == 0:
        return
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    last = lines[-1][:300] if lines else f"OpenVINO could not compile it (exit {proc.returncode})"
    if proc.returncode == EXIT_NOT_INSTALLED or proc.returncode == EXIT_BROKEN:
        raise MissingExtraError(last, installed=proc.returncode == EXIT_BROKEN)
    if proc.returncode == EXIT_OPTION:
        raise OptionError(last)
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise InputError(
            f"OpenVINO crashed compiling it ({name}, in a separate process); expected a binexport WRN export"
        )
    raise InputError(last)


def check_compiles(path: Path, compute: str = "f32") -> None:
    """``path`` passes the ONNX bounds, then OpenVINO compiles it once in a process of its own: a graph that
    crashes OpenVINO ends that process, and this one says so in one line (docs/safety.md).

    Raises:
        MissingExtraError, OptionError: as :func:`compile_apart` (about the machine or an option: no path).
        InputError: the file, named, and why OpenVINO can't compile it.
    """
    from binexport.formats.onnx.bounds import check_onnx_bounds

    bounds = check_onnx_bounds(path)
    try:
        compile_apart(str(path), 0, compute, bounds=asdict(bounds))
    except (MissingExtraError, OptionError):
        raise  # about the machine or an option, not this file
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def _main(argv: list[str]) -> int:
    """``python -m binexport.runtimes.openvino_apart PATH THREADS COMPUTE [BOUNDS_JSON]``: compile once, exit 0,
    or one line and an exit code that carries the error's type (2: this file; :data:`EXIT_NOT_INSTALLED`,
    :data:`EXIT_BROKEN`, :data:`EXIT_OPTION`); with the graph's bounds, under the address-space cap of a bench
    worker timing one image."""
    import json
    import sys

    from binexport.runtimes.memory import address_space, limit_address_space
    from binexport.runtimes.openvino import import_openvino, open_compiled

    try:
        import_openvino()
        if len(argv) > 3:  # the graph's bounds, from the parent that checked it: no onnx import here
            limit_address_space(json.loads(argv[3]), 1, int(argv[1]), "cpu", address_space())
        open_compiled(argv[0], "cpu", int(argv[1]), argv[2])
    except MissingExtraError as e:
        print(str(e), file=sys.stderr)
        return EXIT_BROKEN if e.installed else EXIT_NOT_INSTALLED
    except OptionError as e:
        print(str(e), file=sys.stderr)
        return EXIT_OPTION
    except InputError as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess by compile_apart
    import sys

    sys.exit(_main(sys.argv[1:]))
