"""The run plan: which file runs on which runtime, device and compute precision (verify's and bench's one fan-out).

Every option that decides where a file runs is checked here, before anything
loads: the runtime ids (``onnxruntime``, ``openvino``; ``torch`` for the
reference rows; ``ort`` is the CLI's short alias), the device, the compute
precision and the thread count. :func:`plan_runs` then gives one :class:`Run` per
file and runtime: an ONNX file gets one run per runtime asked for, a model file
(checkpoint, packed, ``.bwn``) one run on the PyTorch reference, and a training
run folder is its one checkpoint (:func:`binexport.formats.resolve`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from binexport.errors import InputError, OptionError
from binexport.runtimes.base import COMPUTE_PRECISIONS

#: Values of ``--device``.
DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
#: Runtime ids an ONNX file can run on: ONNX Runtime, and OpenVINO where its extra is installed.
RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")
#: The runtime id of the PyTorch reference, which runs every model file (checkpoint, packed, ``.bwn``).
REFERENCE_RUNTIME = "torch"
#: Short spellings ``--runtime`` also takes, and the runtime id each means.
RUNTIME_ALIASES: dict[str, str] = {"ort": "onnxruntime"}
#: Values of ``--runtime``: a runtime id, an alias, or ``all`` (every runtime installed here).
RUNTIME_CHOICES: tuple[str, ...] = (*RUNTIMES, *RUNTIME_ALIASES, "all")
DEFAULT_RUNTIME = "onnxruntime"
#: ``--threads`` may ask for at most this many intra-op threads per CPU: beyond it, threads only compete
#: (each holds a stack and scratch buffers), and 1,024 threads on 2 CPUs ran for minutes without an answer.
THREADS_PER_CPU = 4


def runtime_id(name: str) -> str:
    """The runtime id of ``name`` (an id of :data:`RUNTIMES` or an alias such as ``ort``).

    Raises:
        InputError: an unknown runtime.

    Example:
        >>> runtime_id("ort")
        'onnxruntime'
    """
    rt = RUNTIME_ALIASES.get(name, name)
    if rt not in RUNTIMES:
        raise InputError(f"unknown runtime {name!r}; valid: {', '.join(RUNTIMES + tuple(RUNTIME_ALIASES))}")
    return rt


def max_threads() -> int:
    """The most intra-op threads a runtime may be given here: :data:`THREADS_PER_CPU` per CPU (``os.cpu_count``)."""
    return THREADS_PER_CPU * (os.cpu_count() or 1)


def check_threads(threads: int) -> int:
    """``threads`` if it is 0 (the runtime's default: one per core) or 1..:func:`max_threads`.

    Raises:
        InputError: a negative count, or more than this machine's CPUs can run usefully.
    """
    limit = max_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= limit:
        raise InputError(
            f"--threads must be 0..{limit} ({THREADS_PER_CPU} per CPU on this machine's "
            f"{os.cpu_count() or 1}; 0 = one per core), got {threads!r}"
        )
    return threads


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' where PyTorch sees a GPU, else 'cpu'; 'cuda' without one is an error.

    PyTorch decides, not ONNX Runtime: onnxruntime-gpu lists its CUDA provider
    even where CUDA can't load.

    Raises:
        InputError: an unknown device, or 'cuda' where no GPU is visible.
    """
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise InputError("--device cuda: no CUDA device is available to PyTorch here; use --device cpu or auto")
    return "cpu"


def resolve_runtimes(runtime: str | Sequence[str] = DEFAULT_RUNTIME) -> list[str]:
    """The runtime ids ONNX files run on, in :data:`RUNTIMES` order, from ``--runtime`` value(s).

    Aliases (``ort``) give their id; ``all`` means every runtime installed here (OpenVINO only where it
    imports); naming ``openvino`` where it is missing is an error that names the install command.

    Raises:
        InputError: an unknown runtime name, none given, or ``openvino`` asked for but not installed.
    """
    names = [runtime] if isinstance(runtime, str) else list(runtime)
    if not names:
        raise InputError(f"give at least one runtime; valid: {', '.join(RUNTIME_CHOICES)}")
    bad = [n for n in names if n not in RUNTIME_CHOICES]
    if bad:
        raise InputError(f"unknown runtime {bad[0]!r}; valid: {', '.join(RUNTIME_CHOICES)}")
    from binexport.runtimes.openvino import available, import_openvino

    ids = {RUNTIME_ALIASES.get(n, n) for n in names}
    if "openvino" in ids:
        import_openvino()  # asked for by name: not installed or broken is the one error line
    elif "all" in ids:
        return [r for r in RUNTIMES if r != "openvino" or available()]
    return [r for r in RUNTIMES if r in ids]


def runtime_notes(runtime: str | Sequence[str] = DEFAULT_RUNTIME) -> list[str]:
    """What ``--runtime all`` left out and why, where an optional runtime is installed but does not load.

    A runtime that is simply not installed is left out silently (``all`` means every runtime installed here).

    Example:
        >>> runtime_notes("ort")
        []
    """
    names = [runtime] if isinstance(runtime, str) else list(runtime)
    if "all" not in names or "openvino" in names:
        return []
    from binexport.runtimes.openvino import load_failure

    failure = load_failure()
    if failure is None or not failure.installed:
        return []
    return [f"--runtime all left OpenVINO out: {failure}"]


def runtime_device(runtime: str, device: str, resolved: str) -> str:
    """The device ``runtime`` runs on: OpenVINO runs on the CPU, even where ``--device auto`` found a GPU.

    Raises:
        OptionError: ``--device cuda`` asked of OpenVINO.
    """
    if runtime == "openvino":
        if device == "cuda":
            raise OptionError(
                "--device cuda: binexport runs OpenVINO on the CPU only; use --runtime ort for CUDA, or --device cpu"
            )
        return "cpu"
    return resolved


def check_compute(compute: str, runtimes: Sequence[str]) -> None:
    """``bf16`` is an OpenVINO execution mode: refuse it where no OpenVINO row would run.

    Raises:
        InputError: an unknown compute precision, or ``bf16`` without ``openvino`` among ``runtimes``.
    """
    if compute not in COMPUTE_PRECISIONS:
        raise InputError(f"unknown precision {compute!r}; valid: {', '.join(COMPUTE_PRECISIONS)}")
    if compute != "f32" and "openvino" not in runtimes:
        raise InputError(
            f"--precision {compute} is an OpenVINO execution mode; add --runtime openvino "
            f"(ONNX Runtime and the PyTorch reference compute in the file's own precision)"
        )


def plan_runtimes(runtime: str | Sequence[str], compute: str, device: str) -> tuple[list[str], str, dict[str, str]]:
    """The runtimes ONNX files run on, the resolved device, and each runtime's device.

    Every refusal comes before the GPU lookup: an unknown or missing runtime, ``bf16`` without OpenVINO, and
    ``--device cuda`` asked of OpenVINO (GPU or not).

    Raises:
        InputError: as :func:`resolve_runtimes`, :func:`check_compute`, :func:`runtime_device` and
            :func:`resolve_device`.
    """
    runtimes = resolve_runtimes(runtime)
    check_compute(compute, runtimes)
    for rt in runtimes:
        runtime_device(rt, device, "cpu")
    dev = resolve_device(device)
    return runtimes, dev, {rt: runtime_device(rt, device, dev) for rt in runtimes}


def is_onnx(path: str | Path) -> bool:
    """Whether ``path`` is a file that runs on an ONNX runtime (not on the PyTorch reference).

    Raises:
        InputError: the file is unreadable or foreign.
    """
    from binexport import formats

    return formats.detect_file(path)[1].read is None


@dataclass(frozen=True)
class Run:
    """One row to run: a file on one runtime, device and compute precision."""

    path: Path
    runtime: str  # a runtime id: torch (model files), onnxruntime or openvino (ONNX files)
    device: str  # cpu or cuda, resolved
    compute: str = "f32"  # the compute precision asked (bf16 only on OpenVINO)

    @property
    def label(self) -> str:
        """``name (runtime)``: how progress and messages name the row."""
        return f"{self.path.name} ({self.runtime})"


@dataclass
class Plan:
    """What ``verify`` or ``bench`` runs: the runtimes ONNX files run on, the resolved device, every run."""

    runtimes: list[str]
    device: str
    compute: str
    runs: list[Run]


def plan_runs(
    artifacts: Sequence[str | Path],
    runtime: str | Sequence[str] = DEFAULT_RUNTIME,
    compute: str = "f32",
    device: str = "auto",
) -> Plan:
    """One :class:`Run` per ONNX file and runtime, one per model file (on the reference), in the order given.

    Args:
        artifacts: files binexport knows, or training run folders (their one checkpoint).
        runtime: runtime id(s), aliases or ``all``: what ONNX files run on.
        compute: ``f32`` or ``bf16`` (OpenVINO runs only; every other run computes in ``f32``).
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        InputError: the options (as :func:`plan_runtimes`, checked first), a folder without one model file,
            or an unreadable or foreign file.

    Example:
        >>> [(r.path.name, r.runtime) for r in plan_runs(["m.pth.tar", "m.onnx"], "all", device="cpu").runs]  # doctest: +SKIP
        [('m.pth.tar', 'torch'), ('m.onnx', 'onnxruntime'), ('m.onnx', 'openvino')]
    """
    from binexport import formats

    runtimes, dev, devs = plan_runtimes(runtime, compute, device)
    runs = []
    for a in artifacts:
        p = formats.resolve(a)
        if is_onnx(p):
            runs += [Run(p, rt, devs[rt], compute if rt == "openvino" else "f32") for rt in runtimes]
        else:
            runs.append(Run(p, REFERENCE_RUNTIME, dev))
    return Plan(runtimes, dev, compute, runs)
