"""The ONNX Runtime runtime: sessions that say which provider really runs them.

onnxruntime-gpu lists CUDAExecutionProvider even where CUDA can't load and
then silently runs on the CPU; ``session.get_providers()`` is the truth, so
every session made here reports it and a CUDA request that fell back fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from binexport.errors import InputError, OptionError
from binexport.formats.onnx import MAX_FIXED_BATCH
from binexport.runtimes.base import Runtime, graph_input_kind
from binexport.runtimes.ort_kernels import describe_kernels, optimized_ops

_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class OrtRuntime(Runtime):
    """An ONNX Runtime session plus what actually runs it, behind the common :class:`Runtime` loop.

    A graph with a fixed batch size gets its last chunk zero-padded, then cut.
    On CUDA the inputs are uploaded once as OrtValues (where they fit) and run
    through I/O binding, so timed runs measure the model, not host-to-device copies.
    """

    name = "onnxruntime"

    def __init__(self, session: Any, provider: str, device: str = "cpu", source: bytes | str | None = None) -> None:
        self.session = session
        self.provider = provider
        self.device = device
        self._source = source  # the model the session was made from, for :meth:`kernels`
        self._kernels: str | None = None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise InputError(
                f"the graph has {len(inputs)} inputs and {len(outputs)} outputs; a WRN classifier "
                "takes one image batch and gives logits"
            )
        inp = inputs[0]
        self.input_name: str = inp.name
        self.input_type: str = inp.type
        if inp.type not in _INPUT_DTYPES:
            raise InputError(f"the graph input {inp.name!r} is {inp.type}; expected float, float16 or uint8 images")
        shape = list(inp.shape or [])
        if len(shape) != 4:
            raise InputError(
                f"the graph input {inp.name!r} has shape {shape}; expected 4 dimensions "
                "(N, 3, 32, 32) or (N, 32, 32, 3)"
            )
        dim = shape[0]
        self.fixed_batch: int | None = dim if isinstance(dim, int) and dim > 0 else None
        if self.fixed_batch is not None and self.fixed_batch > MAX_FIXED_BATCH:
            raise InputError(
                f"the graph has a fixed batch of {self.fixed_batch:,} images; binexport runs fixed "
                f"batches of at most {MAX_FIXED_BATCH} (every chunk is padded to the batch)"
            )
        meta = self.metadata
        kind = meta.get("binexport.input")
        self.input_kind = graph_input_kind(kind, np.dtype(_INPUT_DTYPES[inp.type]).name)

    @property
    def input_dtype(self) -> type:
        return _INPUT_DTYPES.get(self.input_type, np.float32)

    @property
    def metadata(self) -> dict[str, str]:
        """The model's metadata_props (``binexport.*`` keys for files binexport wrote)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def kernels(self) -> str:
        """What ONNX Runtime really runs, from its own optimised graph: e.g. ``"18 QLinearConv (MLAS QGEMM: weight
        zp != 0; this CPU has no AMX), 3 Conv"``, or ``"21 Conv"`` for a float graph.

        Computed on the first call (it optimises the graph once more, in a second session) and cached; ``""``
        where the session was not made from a model this object kept.
        """
        if self._kernels is None:
            if self._source is None:
                self._kernels = ""
            else:
                cpu = self.provider == "CPUExecutionProvider"
                self._kernels = describe_kernels(optimized_ops(self._source, self.provider), mlas=cpu)
        return self._kernels

    def run(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Float32 logits in batches (the graph's fixed batch where it has one); input cast to the graph's type."""
        return self.logits(x, batch_size)

    def _place(self, x: np.ndarray, batch_size: int) -> list[Any]:
        import onnxruntime as ort

        bs = self.fixed_batch or batch_size
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        slices = []
        for i in range(0, len(x), bs):
            chunk = x[i : i + bs]
            if self.fixed_batch and len(chunk) < bs:
                chunk = np.concatenate([chunk, np.zeros((bs - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            slices.append(chunk)
        if self.device != "cuda" or x.nbytes > _free_cuda_bytes() // 2:
            return slices  # on the CPU a numpy batch is used in place; on a full GPU each is copied in turn
        return [ort.OrtValue.ortvalue_from_numpy(s, self.device, 0) for s in slices]

    def _run(self, batch: Any) -> np.ndarray:
        if isinstance(batch, np.ndarray):
            return _logits(self.session.run(None, {self.input_name: batch})[0])
        io = self.session.io_binding()
        io.bind_ortvalue_input(self.input_name, batch)
        io.bind_output(self.session.get_outputs()[0].name, "cpu")
        self.session.run_with_iobinding(io)
        return _logits(io.copy_outputs_to_cpu()[0])

    def _finish(self, outs: list[Any], n: int) -> np.ndarray:
        return np.concatenate(outs)[:n]


def _logits(out: Any) -> np.ndarray:
    """The first output as float32 logits, or an InputError for a graph whose output is not numbers."""
    arr = np.asarray(out)
    if arr.dtype.kind not in "fiub":
        raise InputError(f"the graph's first output is {arr.dtype} {arr.shape}; expected numeric logits")
    return arr.astype(np.float32, copy=False)


def open_session(
    model: bytes | str,
    device: str = "cpu",
    threads: int = 0,
    disabled_optimizers: tuple[str, ...] = (),
    kernels: str | None = None,
) -> OrtRuntime:
    """An ONNX Runtime session on ``device`` ('cpu' or 'cuda'), refusing a silent CPU fallback.

    Args:
        model: an ONNX file path or serialized bytes.
        device: 'cpu' or 'cuda' (resolve 'auto' first with :func:`binexport.runtimes.plan.resolve_device`).
        threads: intra-op threads (0: ONNX Runtime's default, one per core).
        disabled_optimizers: ONNX Runtime graph optimisers to skip (``.ort`` checks run the ``.onnx`` as the
            ``.ort`` was optimised: :data:`binexport.formats.ort.DISABLED_OPTIMIZERS`).
        kernels: what :meth:`OrtRuntime.kernels` says, where the caller knows better than the graph
            (a ``.ort`` file was optimised when it was written); None: read from ONNX Runtime's optimised graph.

    Raises:
        OptionError: 'cuda' was asked for but ONNX Runtime fell back to another provider.
        ONNX Runtime's own errors (see :func:`ort_errors`) for a graph it can't load.
    """
    import onnxruntime as ort

    # ONNX Runtime logs its own "[E:onnxruntime:...]" lines to stderr before raising; the error itself reaches
    # the user as binexport's one line, so only fatal messages may print
    ort.set_default_logger_severity(4)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 4
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
    if isinstance(model, str):
        try:
            model.encode("utf-8")
        except UnicodeEncodeError:  # a POSIX path of non-UTF-8 bytes: ORT wants text, so give it the bytes
            with open(model, "rb") as f:
                model = f.read()
    session = ort.InferenceSession(
        model, sess_options=opts, providers=providers, disabled_optimizers=list(disabled_optimizers) or None
    )
    used = session.get_providers()[0]
    if device == "cuda" and used != "CUDAExecutionProvider":
        raise OptionError(
            f"--device cuda: ONNX Runtime fell back to {used} (its CUDA provider could not load); "
            "install the CUDA libraries onnxruntime-gpu needs, or use --device cpu"
        )
    rt = OrtRuntime(session, used, device, source=model)
    rt._kernels = kernels
    return rt


def ort_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception types (they derive from Exception only), for callers to translate.

    RuntimeError is included: some pybind errors (e.g. a shape mismatch at run time) surface as it.
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NoModel",
        "RuntimeException",
        "NotImplemented",
        "EPFail",
    )
    return (RuntimeError, *(getattr(state, n) for n in names if isinstance(getattr(state, n, None), type)))


def _free_cuda_bytes() -> int:
    import torch

    return int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else 0
