"""ONNX Runtime sessions that say which provider really runs them.

onnxruntime-gpu lists CUDAExecutionProvider even where CUDA can't load and
then silently runs on the CPU; ``session.get_providers()`` is the truth, so
every session made here reports it and a CUDA request that fell back fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from binexport.errors import InputError


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' where torch sees a GPU, else 'cpu'; 'cuda' without one is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; valid: auto, cpu, cuda")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise InputError("--device cuda: no CUDA device is available to PyTorch here; use --device cpu or auto")
    return "cpu"


@dataclass
class OrtModel:
    """A session plus what actually runs it."""

    session: Any
    provider: str
    input_name: str
    input_type: str

    def run(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits as float32, in batches; input converted to the graph's input type."""
        dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(
            self.input_type, np.float32)
        outs = []
        for i in range(0, len(x), batch_size):
            xb = np.ascontiguousarray(x[i:i + batch_size], dtype=dtype)
            outs.append(np.asarray(self.session.run(None, {self.input_name: xb})[0], dtype=np.float32))
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def open_session(model: bytes | str, device: str = "cpu", threads: int = 0) -> OrtModel:
    """An inference session on ``device`` ('cpu' or 'cuda'), refusing a silent CPU fallback."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if device == "cuda":
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            try:
                preload()
            except (OSError, RuntimeError):
                pass  # the session below tells whether CUDA really loaded
        providers: list[str] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(model, sess_options=opts, providers=providers)
    used = session.get_providers()[0]
    if device == "cuda" and used != "CUDAExecutionProvider":
        raise InputError(f"--device cuda: ONNX Runtime fell back to {used} (its CUDA provider could not load); "
                         "install the CUDA libraries onnxruntime-gpu needs, or use --device cpu")
    inp = session.get_inputs()[0]
    return OrtModel(session, used, inp.name, inp.type)
