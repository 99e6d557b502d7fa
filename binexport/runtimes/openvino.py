"""The OpenVINO runtime: ONNX files compiled by OpenVINO's CPU plugin, exact (f32) unless asked otherwise.

OpenVINO reads binexport's ONNX files as they are (QDQ int8 included) and picks
its own kernels (oneDNN ``brgconv_avx512_amx_I8`` on AMX CPUs, ...). Its default
precision hint on CPUs with bfloat16 instructions (avx512_bf16, AMX) is bf16,
which moves logits by ~1e-1: binexport pins ``INFERENCE_PRECISION_HINT`` to f32
and reads it back from the compiled model, so a row labelled f32 really ran f32.
``bf16`` is a separate, declared-lossy compute mode (``check.TOLERANCES['bf16-compute']``).

OpenVINO is an optional dependency (``pip install "binexport[openvino]"``);
nothing here imports it before a model is opened, and nothing imports torch.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from binexport.errors import InputError, MissingExtraError, OptionError
from binexport.runtimes.base import COMPUTE_PRECISIONS, Runtime, graph_input_kind

#: The one line a user sees where OpenVINO is asked for but not installed.
INSTALL_HINT = 'OpenVINO is not installed; install it with: pip install "binexport[openvino]"'
#: How to mend an OpenVINO that is installed but does not load.
REINSTALL = 'pip install --force-reinstall "binexport[openvino]"'
#: OpenVINO's name for each of :data:`binexport.runtimes.base.COMPUTE_PRECISIONS`.
_HINTS = {"f32": "f32", "bf16": "bf16"}
#: Layer types whose kernels a user wants to see first (they take >95 % of a WRN's time).
_CONV_TYPES = ("Convolution", "GroupConvolution", "FullyConnected", "MatMul")
#: Layer types that are bookkeeping, not compute: left out of the kernel summary.
_SKIP_TYPES = {"Input", "Output", "Const", "Reshape", "Reorder", "Parameter", "Result"}
_NP_TYPES = {"f32": np.float32, "f16": np.float16, "u8": np.uint8}


def import_openvino() -> Any:
    """The ``openvino`` module, or a :class:`~binexport.errors.MissingExtraError` naming the install command.

    Importing a package runs its code: a broken install (a missing shared library, a half-removed package)
    raises anything at import, not only ImportError, or imports without the ``Core`` binexport compiles with.
    Every such failure is the same typed error, so ``--runtime all`` can leave OpenVINO out by type.

    Raises:
        MissingExtraError: OpenVINO is not installed, fails at import, or has no ``Core``.
    """
    try:
        import openvino
    except ImportError as e:
        if e.name in (None, "openvino"):  # no such package (a submodule or library named: a broken one)
            raise MissingExtraError(INSTALL_HINT) from None
        raise MissingExtraError(_broken(e), installed=True) from None
    except Exception as e:  # noqa: BLE001 (a third-party package's import code raised: whatever it is, it is broken)
        raise MissingExtraError(_broken(e), installed=True) from None
    if not callable(getattr(openvino, "Core", None)):
        where = getattr(openvino, "__file__", None) or "an unknown path"
        raise MissingExtraError(
            f"OpenVINO is installed but broken: the openvino module at {where} has no Core; reinstall it "
            f"with: {REINSTALL}",
            installed=True,
        )
    return openvino


def _broken(e: BaseException) -> str:
    text = " ".join(str(e).split())[:160]
    return (
        f"OpenVINO is installed but does not load ({type(e).__name__}{': ' + text if text else ''}); "
        f"reinstall it with: {REINSTALL}"
    )


def available() -> bool:
    """Whether OpenVINO can be imported here (``--runtime all`` includes it only then)."""
    return load_failure() is None


def load_failure() -> MissingExtraError | None:
    """Why OpenVINO can't run here (not installed, or broken), or None where it loads."""
    try:
        import_openvino()
    except MissingExtraError as e:
        return e
    return None


class OpenVinoRuntime(Runtime):
    """A compiled OpenVINO model behind the common :class:`Runtime` loop.

    Attributes:
        compute: the inference precision the compiled model reports (``f32`` or ``bf16``), never the one asked.
        provider: ``OpenVINO:`` plus the execution devices the compiled model reports (``OpenVINO:CPU``).
    """

    name = "openvino"

    def __init__(self, compiled: Any, metadata: dict[str, str], device: str = "cpu") -> None:
        self.compiled = compiled
        self.device = device
        self._metadata = metadata
        self.compute = _element_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        devices = compiled.get_property("EXECUTION_DEVICES")
        self.execution_devices = [str(d) for d in devices]
        self.provider = "OpenVINO:" + ",".join(self.execution_devices)
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        inputs = compiled.inputs
        if len(inputs) != 1 or not compiled.outputs:
            raise InputError(
                f"the graph has {len(inputs)} inputs and {len(compiled.outputs)} outputs; a WRN "
                "classifier takes one image batch and gives logits"
            )
        inp = inputs[0]
        self.input_type = _element_name(inp.get_element_type())
        if self.input_type not in _NP_TYPES:
            raise InputError(f"the graph input is {self.input_type}; expected float, float16 or uint8 images")
        shape = inp.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            raise InputError(
                f"the graph input has shape {shape}; expected 4 dimensions (N, 3, 32, 32) or (N, 32, 32, 3)"
            )
        self.fixed_batch: int | None = shape[0].get_length() if shape[0].is_static else None
        kind = metadata.get("binexport.input")
        self.input_kind = graph_input_kind(kind, np.dtype(_NP_TYPES[self.input_type]).name)
        self._request = compiled.create_infer_request()

    @property
    def metadata(self) -> dict[str, str]:
        """The ONNX metadata_props (``binexport.*`` keys for files binexport wrote)."""
        return dict(self._metadata)

    def kernels(self) -> str:
        """The runtime model's primitive types, counted, convolutions first (``brgconv_avx512_I8 x19; ...``)."""
        return summarize_kernels(primitive_types(self.compiled))

    def _place(self, x: np.ndarray, batch_size: int) -> list[Any]:
        bs = self.fixed_batch or batch_size
        x = np.ascontiguousarray(x, dtype=_NP_TYPES[self.input_type])
        out = []
        for i in range(0, len(x), bs):
            chunk = x[i : i + bs]
            if self.fixed_batch and len(chunk) < bs:
                chunk = np.concatenate([chunk, np.zeros((bs - len(chunk), *chunk.shape[1:]), chunk.dtype)])
            out.append(np.ascontiguousarray(chunk))
        return out

    def _run(self, batch: Any) -> np.ndarray:
        self._request.infer({0: batch}, share_inputs=True)
        out = np.array(self._request.get_output_tensor(0).data)  # a copy: the request reuses its buffer
        if out.dtype.kind not in "fiub":
            raise InputError(f"the graph's first output is {out.dtype} {out.shape}; expected numeric logits")
        return out.astype(np.float32, copy=False)

    def _finish(self, outs: list[Any], n: int) -> np.ndarray:
        return np.concatenate(outs)[:n]


def _element_name(t: Any) -> str:
    """OpenVINO's short name of an element type (``f32``, ``bf16``, ``u8``)."""
    name = getattr(t, "get_type_name", None)
    return str(name()) if callable(name) else str(t)


def primitive_types(compiled: Any) -> Counter[tuple[str, str]]:
    """(layer type, primitive type) of every op of the compiled model's runtime graph, counted."""
    out: Counter[tuple[str, str]] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        layer = rt["layerType"].astype(str) if "layerType" in rt else op.get_type_name()
        prim = rt["primitiveType"].astype(str) if "primitiveType" in rt else "unknown"
        out[(layer, prim)] += 1
    return out


def summarize_kernels(counts: Counter[tuple[str, str]], limit: int = 4) -> str:
    """One short line: convolution primitives with counts first, then the ``limit`` commonest other kernels.

    Example:
        >>> summarize_kernels(Counter({("Convolution", "brgconv_avx512_I8"): 19, ("Eltwise", "jit_avx512_f32"): 9}))
        'conv: brgconv_avx512_I8 x19; other: jit_avx512_f32 x9'
    """
    conv: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for (layer, prim), n in counts.items():
        if layer in _CONV_TYPES:
            conv[prim] += n
        elif layer not in _SKIP_TYPES and not prim.startswith("unknown"):
            other[prim] += n
    parts = []
    if conv:
        parts.append("conv: " + ", ".join(f"{p} x{n}" for p, n in conv.most_common()))
    if other:
        parts.append("other: " + ", ".join(f"{p} x{n}" for p, n in other.most_common(limit)))
    return "; ".join(parts)


def open_compiled(path: str, device: str = "cpu", threads: int = 0, compute: str = "f32") -> OpenVinoRuntime:
    """Compile an ONNX file on OpenVINO's CPU plugin with the precision hint pinned, and check what it reports.

    Args:
        path: the ONNX file.
        device: 'cpu' only (binexport runs OpenVINO on its CPU plugin).
        threads: ``INFERENCE_NUM_THREADS`` (0: OpenVINO's default, one per core).
        compute: one of :data:`binexport.runtimes.base.COMPUTE_PRECISIONS`: ``f32`` (exact, the default) or ``bf16``.

    Raises:
        MissingExtraError: OpenVINO is missing or broken.
        OptionError: ``device`` is cuda, or bf16 asked on a CPU that does not run it.
        InputError: a bad precision, or a file OpenVINO cannot read.
    """
    if device != "cpu":
        raise OptionError(
            f"--device {device}: binexport runs OpenVINO on the CPU only; use --runtime ort for CUDA, or --device cpu"
        )
    if compute not in COMPUTE_PRECISIONS:
        raise InputError(f"unknown precision {compute!r}; valid: {', '.join(COMPUTE_PRECISIONS)}")
    ov = import_openvino()
    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[compute]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        model = core.read_model(path)
        metadata = _metadata(model)
        compiled = core.compile_model(model, "CPU", config)
    except (RuntimeError, ValueError, TypeError, OSError) as e:  # OpenVINO raises RuntimeError for bad graphs
        raise InputError(f"OpenVINO cannot open it ({' '.join(str(e).split())[:200]})") from None
    runtime = OpenVinoRuntime(compiled, metadata, device)
    if runtime.compute != compute:  # a CPU without bf16 instructions quietly runs f32: say so, don't label it
        raise OptionError(
            f"--precision {compute}: OpenVINO compiled the model with {runtime.compute} on this CPU "
            f"(it runs {compute} only where the CPU has the instructions); use --precision f32"
        )
    return runtime


def int2_refusal(runtime: str, same_file_weights: list[str], error: InputError) -> str:
    """The note that replaces a failed OpenVINO row of an int2 file, whose ONNX Runtime row stands: OpenVINO's ONNX
    frontend (2026.4) reads no INT2 tensors. ``same_file_weights`` are the weights of the rows already opened
    for the same file; ``error`` is what opening this row raised (its last clause is OpenVINO's own reason).

    Raises:
        InputError: ``error`` itself, where the row is not OpenVINO's or no ONNX Runtime row of an int2 file
            stands before it (verify and bench fail on it as on any other file).
    """
    if runtime != "openvino" or "int2" not in same_file_weights:
        raise error
    why = str(error).rstrip(")").rsplit(":", 1)[-1].strip()[:60]
    return f"OpenVINO did not run it: its ONNX frontend reads no INT2 weights ({why}); ONNX Runtime runs it"


def _metadata(model: Any) -> dict[str, str]:
    """The ONNX ``metadata_props``, which OpenVINO keeps under the model's ``framework`` rt_info."""
    rt = model.get_rt_info()
    if "framework" not in rt:
        return {}
    try:
        fw = rt["framework"]
        fw = fw.astype(dict) if hasattr(fw, "astype") else fw  # a dict of OVAny values (2026.4) or an OVAny
        return {str(k): v.astype(str) if hasattr(v, "astype") else str(v) for k, v in dict(fw).items()}
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return {}
