"""Runtimes: the only places a model is run, every batching loop and every device decision.

Two runtimes share one surface (:class:`Runtime`): the PyTorch reference of
the SPEC (:mod:`.torch_ref`, for every model binexport reads) and ONNX Runtime
(:mod:`.ort`, for ONNX files). ``verify``, ``to-onnx`` validation and ``bench``
call ``Runtime.logits`` / ``Runtime.timed_logits`` and never loop themselves.
Device choice (:func:`resolve_device`) and the TF32 policy live here too.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from binexport.errors import InputError

#: Values of ``--device``.
DEVICES: tuple[str, ...] = ("auto", "cuda", "cpu")
#: What a graph or model takes as input (the ``binexport.input`` ONNX metadata values).
INPUT_NCHW = "float32-nchw-normalized"
INPUT_NCHW_F16 = "float16-nchw-normalized"
INPUT_NHWC = "uint8-nhwc"
#: Images run once, untimed, before a timed run: one-off setup (CUDA context, allocator) is not throughput.
WARMUP = 2

#: ``progress(images_done, images_total)``, called after every batch.
Progress = Callable[[int, int], None]


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


def select_input(kind: str, pixels: np.ndarray, normalized: np.ndarray) -> np.ndarray:
    """The array a runtime taking ``kind`` input is fed: raw uint8 NHWC pixels or the normalised NCHW batch."""
    return pixels if kind == INPUT_NHWC else normalized


class Runtime:
    """One loaded model on one device. Subclasses say how to place a batch and run it; the loop is here.

    Attributes:
        name: ``torch`` or ``onnxruntime``.
        device: ``cpu`` or ``cuda``.
        provider: what really runs it (``torch:cpu``, ``CPUExecutionProvider``, ...).
        input_kind: one of :data:`INPUT_NCHW`, :data:`INPUT_NCHW_F16`, :data:`INPUT_NHWC`.
    """

    name = "runtime"
    device = "cpu"
    provider = ""
    input_kind = INPUT_NCHW

    def logits(self, x: np.ndarray, batch_size: int = 256, progress: Progress | None = None) -> np.ndarray:
        """Float32 logits (N, classes) of ``x`` (in this runtime's ``input_kind``), in batches."""
        return self.timed_logits(x, batch_size, progress, warmup=0)[0]

    def timed_logits(self, x: np.ndarray, batch_size: int = 256, progress: Progress | None = None,
                     warmup: int = WARMUP) -> tuple[np.ndarray, float]:
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
