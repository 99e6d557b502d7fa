"""What every runtime shares: the :class:`Runtime` surface, the input kinds, and every batching loop.

The runtimes (:mod:`.torch_ref`, :mod:`.ort`, :mod:`.openvino`) import this
module and nothing above it; the package face re-exports it. Nothing here
imports torch or a runtime's library.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.model import Arch

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
#: Compute precisions (``--precision``): ``f32`` is exact; ``bf16`` is OpenVINO's lossy bfloat16 execution.
#: Not the half-precision *storage* of weights (:mod:`binexport.precision`, a file's ``weights``).
COMPUTE_PRECISIONS: tuple[str, ...] = ("f32", "bf16")
#: Images run once, untimed, before a timed run: one-off setup (CUDA context, allocator) is not throughput.
WARMUP = 2
#: The largest batch (images per forward call) any verb runs: 4,096 CIFAR images are 48 MiB of float32 input.
MAX_BATCH_SIZE = 4096

#: ``progress(label, done, total)``: ``label`` names what runs (a file and its runtime, or a phase), ``done`` of
#: ``total`` units (images, or timing slices) are finished. The one progress signature of every loop and verb.
Progress = Callable[[str, int, int], None]


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is 1..:data:`MAX_BATCH_SIZE`: the one batch-size bound of every verb.

    Raises:
        InputError: not an integer in range.

    Example:
        >>> check_batch_size(64)
        64
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InputError(f"--batch-size must be 1..{MAX_BATCH_SIZE}, got {batch_size!r}")
    return batch_size


def model_input_kind(arch: Arch) -> str:
    """What a model's float32 forward takes: raw pixels where it has an input BN, else normalised images
    (with pytorchcv's mean/std for the pytorchcv family)."""
    if arch.input_bn:
        return INPUT_NCHW_PIXELS
    return INPUT_NCHW_PYTORCHCV if arch.normalization == "pytorchcv" else INPUT_NCHW


def graph_input_kind(declared: str | None, dtype: str) -> str:
    """What an ONNX graph takes: its ``binexport.input`` metadata where that is a known kind, else what its input's
    element type (``uint8``, ``float16`` or ``float32``) says: uint8 NHWC pixels or normalised NCHW.

    Example:
        >>> graph_input_kind(None, "uint8")
        'uint8-nhwc'
    """
    if declared in INPUT_KINDS:
        return str(declared)
    return INPUT_NHWC if dtype == "uint8" else INPUT_NCHW_F16 if dtype == "float16" else INPUT_NCHW


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
        name: the runtime id: ``torch`` (the reference), ``onnxruntime`` or ``openvino``.
        device: ``cpu`` or ``cuda``.
        provider: what really runs it (``torch:cpu``, ``CPUExecutionProvider``, ...).
        input_kind: one of :data:`INPUT_KINDS`.
        compute: the compute precision that really ran (one of :data:`COMPUTE_PRECISIONS`): ``f32`` unless a
            runtime runs a lossy mode (OpenVINO ``bf16``); a float16 file's own half precision is its weights'.
    """

    name = "runtime"
    device = "cpu"
    provider = ""
    input_kind = INPUT_NCHW
    compute = "f32"

    def kernels(self) -> str:
        """Which kernels ran, as the runtime names them (one short line), or "" where it does not say."""
        return ""

    def logits(
        self, x: np.ndarray, batch_size: int = 256, progress: Progress | None = None, label: str = ""
    ) -> np.ndarray:
        """Float32 logits (N, classes) of ``x`` (in this runtime's ``input_kind``), in batches."""
        return self.timed_logits(x, batch_size, progress, warmup=0, label=label)[0]

    def timed_logits(
        self,
        x: np.ndarray,
        batch_size: int = 256,
        progress: Progress | None = None,
        warmup: int = WARMUP,
        label: str = "",
        offset: int = 0,
        total: int | None = None,
    ) -> tuple[np.ndarray, float]:
        """Logits, and the seconds the batches took after an untimed warm-up of ``warmup`` images.

        Inputs are placed on the device once before the clock starts, so the time is the model's.
        ``progress(label, offset + done, total)`` follows every batch (``total``: ``len(x)`` unless given,
        for ``x`` that is one chunk of a longer stream).
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
                progress(label, offset + done, n if total is None else total)
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
    progress: Progress | None = None,
    catch: tuple[type[Exception], ...] = (),
    on_error: Callable[[int, tuple[int, ...], Exception], Exception] | None = None,
    labels: list[str] | None = None,
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
        progress: ``progress(labels[i], images_done, n)`` after every batch of runtime ``i``.
        catch, on_error: an exception of a type in ``catch`` raised by runtime ``i`` on input of shape ``s``
            (one image) is replaced by ``on_error(i, s, exc)``.
        labels: one per runtime, for ``progress`` (default: each runtime's name).

    Returns:
        ``[(logits, seconds)]`` in the order of ``runtimes``.
    """
    from binexport.data import normalize

    names = labels if labels is not None else [rt.name for rt in runtimes]
    chunk = batch_size * max(1, -(-STREAM_CHUNK // batch_size))
    outs: list[list[np.ndarray]] = [[] for _ in runtimes]
    secs = [0.0] * len(runtimes)
    for start in range(0, n, chunk):
        pixels = np.asarray(images[start : min(start + chunk, n)])
        normalized = normalize(pixels)
        for i, rt in enumerate(runtimes):
            x = select_input(rt.input_kind, pixels, normalized)
            try:
                logits, s = rt.timed_logits(
                    x, batch_size, progress, WARMUP if start == 0 else 0, names[i], offset=start, total=n
                )
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
