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
    device: str = "cpu"

    @property
    def input_dtype(self) -> type:
        return {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}.get(
            self.input_type, np.float32)

    @property
    def metadata(self) -> dict[str, str]:
        """The model's metadata_props (``binexport.*`` keys for files binexport wrote)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def upload(self, x: np.ndarray, batch_size: int = 256) -> list[Any]:
        """Input batches in the graph's dtype, placed once on the session's device where they fit.

        On the CPU the OrtValues wrap the array without a copy; on CUDA they are
        copied once, so timed runs measure the model, not host-to-device copies.
        """
        import onnxruntime as ort

        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        slices = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
        if self.device == "cuda" and x.nbytes > _free_cuda_bytes() // 2:
            return slices  # run_batch copies each one in turn
        return [ort.OrtValue.ortvalue_from_numpy(s, self.device, 0) for s in slices]

    def run_batch(self, batch: Any) -> np.ndarray:
        """Float32 logits of one batch from ``upload``."""
        if isinstance(batch, np.ndarray):
            return np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)
        io = self.session.io_binding()
        io.bind_ortvalue_input(self.input_name, batch)
        io.bind_output(self.session.get_outputs()[0].name, "cpu")
        self.session.run_with_iobinding(io)
        return np.asarray(io.copy_outputs_to_cpu()[0], dtype=np.float32)

    def run(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits as float32, in batches; input converted to the graph's input type."""
        dtype = self.input_dtype
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
        # TF32 convolutions round inputs to 10 mantissa bits: off, so float32 graphs compare to 1e-4
        providers: list[Any] = [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(model, sess_options=opts, providers=providers)
    used = session.get_providers()[0]
    if device == "cuda" and used != "CUDAExecutionProvider":
        raise InputError(f"--device cuda: ONNX Runtime fell back to {used} (its CUDA provider could not load); "
                         "install the CUDA libraries onnxruntime-gpu needs, or use --device cpu")
    inp = session.get_inputs()[0]
    return OrtModel(session, used, inp.name, inp.type, device)


def ort_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception types (they derive from Exception only), for callers to translate.

    RuntimeError is included: some pybind errors (e.g. a shape mismatch at run time) surface as it.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel",
             "RuntimeException", "NotImplemented", "EPFail")
    return (RuntimeError, *(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type)))


def _free_cuda_bytes() -> int:
    import torch

    return int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else 0
