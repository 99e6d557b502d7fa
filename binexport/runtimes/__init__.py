"""Runtimes: the only places a model is run, every batching loop and every device decision.

Three runtimes share one surface (:class:`Runtime`): the PyTorch reference of
the SPEC (:mod:`.torch_ref`, for every model binexport reads), ONNX Runtime
(:mod:`.ort`, for ONNX files) and, where its extra is installed, OpenVINO
(:mod:`.openvino`, ONNX files on the CPU; ``--runtime``). ``verify``, ``to-onnx`` validation and ``bench``
call ``Runtime.logits`` / ``Runtime.timed_logits`` and never loop themselves.
Device choice (:func:`resolve_device`) and the TF32 policy live here too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import InputError, MissingExtraError, OptionError
from binexport.model import Arch, Model

#: Values of ``--device``.
DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
#: Runtimes an ONNX file can run on (``--runtime``): ONNX Runtime, and OpenVINO where its extra is installed.
RUNTIMES: tuple[str, ...] = ("ort", "openvino")
#: Values of ``--runtime``: one of :data:`RUNTIMES`, or ``all`` (every runtime installed here).
RUNTIME_CHOICES: tuple[str, ...] = (*RUNTIMES, "all")
DEFAULT_RUNTIME = "ort"
#: Compute precisions (``--precision``): ``f32`` is exact; ``bf16`` is OpenVINO's lossy bfloat16 execution.
PRECISIONS: tuple[str, ...] = ("f32", "bf16")
#: What a graph or model takes as input (the ``binexport.input`` ONNX metadata values).
INPUT_NCHW = "float32-nchw-normalized"
INPUT_NCHW_F16 = "float16-nchw-normalized"
INPUT_NHWC = "uint8-nhwc"
#: Raw 0..255 pixels as float NCHW: the input of a model that normalises with its own input BN (McDonnell's).
INPUT_NCHW_PIXELS = "float32-nchw-pixels"
INPUT_NCHW_PIXELS_F16 = "float16-nchw-pixels"
#: Normalised NCHW with pytorchcv's own mean/std (binexport.arch.INPUT_NORMALIZATION), not the SPEC's CIFAR one.
INPUT_NCHW_PYTORCHCV = "float32-nchw-normalized-pytorchcv"
INPUT_NCHW_PYTORCHCV_F16 = "float16-nchw-normalized-pytorchcv"
#: Every input kind a runtime may take.
INPUT_KINDS = (
    INPUT_NCHW,
    INPUT_NCHW_F16,
    INPUT_NHWC,
    INPUT_NCHW_PIXELS,
    INPUT_NCHW_PIXELS_F16,
    INPUT_NCHW_PYTORCHCV,
    INPUT_NCHW_PYTORCHCV_F16,
)
#: Images run once, untimed, before a timed run: one-off setup (CUDA context, allocator) is not throughput.
WARMUP = 2

#: ``progress(images_done, images_total)``, called after every batch.
Progress = Callable[[int, int], None]
#: ``--threads`` may ask for at most this many intra-op threads per CPU: beyond it, threads only compete
#: (each holds a stack and scratch buffers), and 1,024 threads on 2 CPUs ran for minutes without an answer.
THREADS_PER_CPU = 4


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
    """The runtimes ONNX files run on, in :data:`RUNTIMES` order, from ``--runtime`` value(s).

    ``all`` means every runtime installed here (OpenVINO only where it imports); naming ``openvino`` where it
    is missing is an error that names the install command.

    Raises:
        InputError: an unknown runtime name, none given, or ``openvino`` asked for but not installed.
    """
    names = [runtime] if isinstance(runtime, str) else list(runtime)
    if not names:
        raise InputError(f"give at least one runtime; valid: {', '.join(RUNTIME_CHOICES)}")
    bad = [n for n in names if n not in RUNTIME_CHOICES]
    if bad:
        raise InputError(f"unknown runtime {bad[0]!r}; valid: {', '.join(RUNTIME_CHOICES)}")
    from binexport.runtimes import openvino

    if "openvino" in names:
        openvino.import_openvino()  # asked for by name: not installed or broken is the one error line
    elif "all" in names:
        return [r for r in RUNTIMES if r != "openvino" or openvino.available()]
    return [r for r in RUNTIMES if r in names]


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
    from binexport.runtimes import openvino

    failure = openvino.load_failure()
    if failure is None or not failure.installed:
        return []
    return [f"--runtime all left OpenVINO out: {failure}"]


def runtime_device(runtime: str, device: str, resolved: str) -> str:
    """The device ``runtime`` runs on: OpenVINO runs on the CPU, even where ``--device auto`` found a GPU.

    Raises:
        InputError: ``--device cuda`` asked of OpenVINO.
    """
    if runtime == "openvino":
        if device == "cuda":
            raise OptionError(
                "--device cuda: binexport runs OpenVINO on the CPU only; use --runtime ort for CUDA, or --device cpu"
            )
        return "cpu"
    return resolved


def plan_runtimes(runtime: str | Sequence[str], precision: str, device: str) -> tuple[list[str], str, dict[str, str]]:
    """What ``verify`` and ``bench`` run ONNX files on: the runtimes, the resolved device, each runtime's device.

    Every refusal comes before the GPU lookup: an unknown or missing runtime, ``bf16`` without OpenVINO, and
    ``--device cuda`` asked of OpenVINO (GPU or not).

    Raises:
        InputError: as :func:`resolve_runtimes`, :func:`check_precision`, :func:`runtime_device` and
            :func:`resolve_device`.
    """
    runtimes = resolve_runtimes(runtime)
    check_precision(precision, runtimes)
    for rt in runtimes:
        runtime_device(rt, device, "cpu")
    dev = resolve_device(device)
    return runtimes, dev, {rt: runtime_device(rt, device, dev) for rt in runtimes}


def check_precision(precision: str, runtimes: Sequence[str]) -> None:
    """``bf16`` is an OpenVINO execution mode: refuse it where no OpenVINO row would run.

    Raises:
        InputError: an unknown precision, or ``bf16`` without ``openvino`` among ``runtimes``.
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "f32" and "openvino" not in runtimes:
        raise InputError(
            f"--precision {precision} is an OpenVINO execution mode; add --runtime openvino "
            f"(ONNX Runtime and the PyTorch reference compute in the file's own precision)"
        )


def model_input_kind(arch: Arch) -> str:
    """What a model's float32 forward takes: raw pixels where it has an input BN, else normalised images
    (with pytorchcv's mean/std for the pytorchcv family)."""
    if arch.input_bn:
        return INPUT_NCHW_PIXELS
    return INPUT_NCHW_PYTORCHCV if arch.normalization == "pytorchcv" else INPUT_NCHW


def select_input(kind: str, pixels: np.ndarray, normalized: np.ndarray) -> np.ndarray:
    """The array a runtime taking ``kind`` input is fed: the input convention travels with the artifact.

    Raw uint8 NHWC pixels, the same pixels as float32 NCHW (0..255, for a model with an input BN), or the
    normalised NCHW batch. A float16 runtime casts its input itself. A pytorchcv kind is normalised here from
    ``pixels`` with pytorchcv's mean/std, whatever ``normalized`` holds.
    """
    if kind == INPUT_NHWC:
        return pixels
    if kind in (INPUT_NCHW_PYTORCHCV, INPUT_NCHW_PYTORCHCV_F16):
        from binexport.arch import INPUT_NORMALIZATION
        from binexport.data import normalize

        return normalize(pixels, *INPUT_NORMALIZATION["pytorchcv"])
    if kind in (INPUT_NCHW_PIXELS, INPUT_NCHW_PIXELS_F16):
        return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
    return normalized


class Runtime:
    """One loaded model on one device. Subclasses say how to place a batch and run it; the loop is here.

    Attributes:
        name: ``torch``, ``onnxruntime`` or ``openvino``.
        device: ``cpu`` or ``cuda``.
        provider: what really runs it (``torch:cpu``, ``CPUExecutionProvider``, ...).
        input_kind: one of :data:`INPUT_KINDS`.
        precision: the compute precision that really ran (one of :data:`PRECISIONS`): ``f32`` unless a
            runtime runs a lossy mode (OpenVINO ``bf16``); a float16 file's own half precision is its weights'.
    """

    name = "runtime"
    device = "cpu"
    provider = ""
    input_kind = INPUT_NCHW
    precision = "f32"

    def kernels(self) -> str:
        """Which kernels ran, as the runtime names them (one short line), or "" where it does not say."""
        return ""

    def logits(self, x: np.ndarray, batch_size: int = 256, progress: Progress | None = None) -> np.ndarray:
        """Float32 logits (N, classes) of ``x`` (in this runtime's ``input_kind``), in batches."""
        return self.timed_logits(x, batch_size, progress, warmup=0)[0]

    def timed_logits(
        self, x: np.ndarray, batch_size: int = 256, progress: Progress | None = None, warmup: int = WARMUP
    ) -> tuple[np.ndarray, float]:
        """Logits, and the seconds the batches took after an untimed warm-up of ``warmup`` images.

        Inputs are placed on the device once before the clock starts, so the time is the model's.
        """
        n = len(x)
        if n == 0:
            return self._empty(), 0.0
        batches = self._place(x, batch_size)
        if warmup:
            self._finish([self._run(self._place(x[:warmup], warmup)[0])], min(warmup, n))
        self._sync()
        t0 = time.perf_counter()
        outs, done = [], 0
        for b in batches:
            outs.append(self._run(b))
            done = min(done + batch_size, n)
            if progress is not None:
                progress(done, n)
        self._sync()
        logits = self._finish(outs, n)
        return logits, time.perf_counter() - t0

    def time_calls(self, x: np.ndarray, iters: int) -> list[float]:
        """Seconds of each of ``iters`` forward calls on the one batch ``x`` (placed once, after one untimed call)."""
        batch = self._place(x, len(x))[0]
        self._run(batch)
        self._sync()
        out = []
        for _ in range(iters):
            t0 = time.perf_counter()
            self._run(batch)
            self._sync()
            out.append(time.perf_counter() - t0)
        return out

    # --- what a runtime implements ---
    def _place(self, x: np.ndarray, batch_size: int) -> list[Any]:
        raise NotImplementedError

    def _run(self, batch: Any) -> Any:
        raise NotImplementedError

    def _finish(self, outs: list[Any], n: int) -> np.ndarray:
        raise NotImplementedError

    def _empty(self) -> np.ndarray:
        return np.zeros((0, 0), np.float32)

    def _sync(self) -> None:
        """Wait for queued device work (CUDA), so timings are real."""


#: Images decoded and normalised at a time by :func:`stream_logits`: at least this many (a whole number of
#: batches), so memory holds one chunk (1,024 images: 3 MiB of pixels, 12 MiB of floats per copy) whatever the count.
STREAM_CHUNK = 1024


def stream_logits(
    runtimes: list[Runtime],
    images: Any,
    n: int,
    batch_size: int = 256,
    progress: Callable[[int, int, int], None] | None = None,
    catch: tuple[type[Exception], ...] = (),
    on_error: Callable[[int, tuple[int, ...], Exception], Exception] | None = None,
) -> list[tuple[np.ndarray, float]]:
    """Logits and timed seconds of every runtime over the first ``n`` of ``images``, one chunk at a time.

    Each chunk of uint8 NHWC pixels (``images[a:b]``: an array, or a folder that decodes on demand) is
    normalised once and run by every runtime in turn, so memory holds one chunk plus the logits (N x classes)
    whatever ``n`` is, and load from elsewhere on the machine hits every runtime alike. Each runtime warms
    up on its first chunk, untimed.

    Args:
        runtimes: what runs; each takes its own input kind (:func:`select_input`).
        images: anything ``images[a:b]`` turns into (b - a, 32, 32, 3) uint8.
        n: how many images (from the start).
        batch_size: images per forward call; chunks are a whole number of batches.
        progress: ``progress(runtime_index, images_done, n)`` after every batch of every runtime.
        catch, on_error: an exception of a type in ``catch`` raised by runtime ``i`` on input of shape ``s``
            (one image) is replaced by ``on_error(i, s, exc)``.

    Returns:
        ``[(logits, seconds)]`` in the order of ``runtimes``.
    """
    from binexport.data import normalize

    chunk = batch_size * max(1, -(-STREAM_CHUNK // batch_size))
    outs: list[list[np.ndarray]] = [[] for _ in runtimes]
    secs = [0.0] * len(runtimes)
    for start in range(0, n, chunk):
        pixels = np.asarray(images[start : min(start + chunk, n)])
        normalized = normalize(pixels)
        for i, rt in enumerate(runtimes):
            x = select_input(rt.input_kind, pixels, normalized)
            tick = None if progress is None else (lambda done, _, i=i, start=start: progress(i, start + done, n))
            try:
                logits, s = rt.timed_logits(x, batch_size, tick, warmup=WARMUP if start == 0 else 0)
            except catch as e:
                if on_error is None:
                    raise
                raise on_error(i, tuple(x.shape[1:]), e) from None
            outs[i].append(logits)
            secs[i] += s
        del pixels, normalized, x  # before the next chunk is decoded: one chunk alive at a time
    return [
        (np.concatenate(o) if o else rt.logits(np.zeros((0, 3, 32, 32), np.float32)), t)
        for o, t, rt in zip(outs, secs, runtimes, strict=True)
    ]


@dataclass
class Artifact:
    """A file ready to run: its runtime, what it is, and its model where binexport reads the file."""

    path: Path
    format: str  # file format: checkpoint, packed, bwn, onnx
    weights: str  # weight encoding: float32, 1-bit, float16, ...
    runtime: Runtime
    model: Model | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bounds: Any = None  # an ONNX graph's OnnxBounds: what its tensors may take (formats.onnx.bounds)


def is_onnx(path: str | Path) -> bool:
    """Whether ``path`` is a file that runs on an ONNX runtime (not on the PyTorch reference).

    Raises:
        InputError: the file is unreadable or foreign.
    """
    from binexport import formats

    return formats.detect_file(path)[1].read is None


def open_artifact(
    path: str | Path,
    device: str = "cpu",
    threads: int = 0,
    binarized: bool | None = None,
    runtime: str = DEFAULT_RUNTIME,
    precision: str = "f32",
) -> Artifact:
    """Open any file binexport knows on the runtime it deploys with, detected from its content.

    Model files (checkpoint, packed, ``.bwn``) run on the PyTorch reference; ONNX files on ``runtime``
    (ONNX Runtime or OpenVINO; torch is not imported for them).

    Args:
        path: the file.
        device: 'cpu' or 'cuda' (resolve 'auto' first with :func:`resolve_device`).
        threads: intra-op threads for the runtime (0: its default); at most :func:`max_threads`.
        binarized: override ``log.txt`` about ``--binarize`` for training checkpoints.
        runtime: one of :data:`RUNTIMES`, for ONNX files (model files always run on the PyTorch reference).
        precision: one of :data:`PRECISIONS`, for OpenVINO (``f32``: exact; ``bf16``: lossy).

    Raises:
        InputError: the file is unreadable, foreign, an ONNX graph whose tensors pass the bounds of
            :mod:`binexport.formats.onnx.bounds`, or the runtime is missing or can't open it.
    """
    from binexport import formats

    check_threads(threads)
    p, fmt = formats.detect_file(path)
    if fmt.read is not None:
        from binexport.runtimes.torch_ref import TorchRuntime

        model = formats.load(p, binarized=binarized)
        return Artifact(p, model.source.format, model.weights, TorchRuntime(model, device, threads), model)
    from binexport.formats.onnx import WEIGHT_ALIASES
    from binexport.formats.onnx.bounds import check_onnx_bounds

    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    if fmt.name == "ort":
        return _open_ort(p, fmt.name, device, threads, runtime)
    bounds = check_onnx_bounds(p)  # an ONNX file is a program: size what it can allocate before a session loads it
    if runtime == "openvino":
        from binexport.runtimes.openvino import open_compiled

        try:
            rt: Runtime = open_compiled(str(p), device, threads, precision)
        except (MissingExtraError, OptionError):
            raise  # about the machine or an option, not this file
        except InputError as e:
            raise InputError(f"{p}: {e}") from None
    else:
        from binexport.runtimes.ort import open_session, ort_errors

        try:
            rt = open_session(str(p), device, threads)
        except (*ort_errors(), ValueError, TypeError) as e:  # type: ignore[misc]  # ValueError: e.g. metadata not UTF-8
            raise InputError(f"{p}: ONNX Runtime cannot open it ({str(e).strip()[:200]})") from None
        except OptionError:
            raise
        except InputError as e:
            raise InputError(f"{p}: {e}") from None
    meta = rt.metadata  # type: ignore[attr-defined]
    weights, notes = meta.get("binexport.weights"), []
    if weights is None:
        weights = "float32"
        notes.append("no binexport.weights metadata: held to the float32 tolerance")
    return Artifact(p, fmt.name, WEIGHT_ALIASES.get(weights, weights), rt, None, meta, notes, bounds)


def _open_ort(p: Path, fmt: str, device: str, threads: int, runtime: str) -> Artifact:
    """A ``.ort`` file on ONNX Runtime, after :func:`binexport.formats.ort.check_ort_bounds` (ONNX's checker can't
    read it); OpenVINO does not read the format."""
    from binexport.formats.onnx import WEIGHT_ALIASES
    from binexport.formats.ort import check_ort_bounds
    from binexport.runtimes.ort import open_session, ort_errors

    if runtime != "ort":
        raise InputError(f"{p}: a .ort file runs on ONNX Runtime only; use --runtime ort (OpenVINO reads .onnx)")
    check_ort_bounds(p)
    try:
        rt = open_session(p.read_bytes(), device, threads)  # ONNX Runtime tells the format from the bytes
    except (*ort_errors(), ValueError, TypeError) as e:  # type: ignore[misc]
        raise InputError(f"{p}: ONNX Runtime cannot open it ({str(e).strip()[:200]})") from None
    rt._kernels = "as stored in the .ort file (ONNX Runtime optimised it when it was written)"
    meta = rt.metadata
    weights, notes = meta.get("binexport.weights"), []
    if weights is None:
        weights = "float32"
        notes.append("no binexport.weights metadata: held to the float32 tolerance")
    return Artifact(p, fmt, WEIGHT_ALIASES.get(weights, weights), rt, None, meta, notes)


def open_runtime(
    path: str | Path, device: str = "cpu", threads: int = 0, runtime: str = DEFAULT_RUNTIME, precision: str = "f32"
) -> tuple[Runtime, dict[str, Any]]:
    """:func:`open_artifact`, as (runtime, a JSON-able description): what the bench worker needs."""
    a = open_artifact(path, device, threads, runtime=runtime, precision=precision)
    info: dict[str, Any] = {"format": a.format, "weights": a.weights, "file_bytes": a.path.stat().st_size}
    if a.bounds is not None:
        info["bounds"] = {k: v for k, v in vars(a.bounds).items() if isinstance(v, int)}
    return a.runtime, info
