"""Open any file binexport knows on the runtime it deploys with: an :class:`Artifact`.

Model files (checkpoint, packed, ``.bwn``) run on the PyTorch reference
(:mod:`.torch_ref`); ONNX files on ONNX Runtime (:mod:`.ort`) or OpenVINO
(:mod:`.openvino`), which are imported only when a file needs them (torch is
never imported for an ONNX file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binexport.errors import InputError, MissingExtraError, OptionError
from binexport.model import Model
from binexport.runtimes.base import Runtime
from binexport.runtimes.plan import DEFAULT_RUNTIME, Run, check_threads, runtime_id


@dataclass
class Artifact:
    """A file ready to run: the loaded runtime session, what the file is, and its model where binexport reads it."""

    path: Path
    format: str  # file format: checkpoint, packed, bwn, onnx
    weights: str  # weight encoding: float32, 1-bit, float16, ...
    session: Runtime  # the loaded file on its runtime (``session.name`` is the runtime id)
    model: Model | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bounds: Any = None  # an ONNX graph's OnnxBounds: what its tensors may take (formats.onnx.bounds)


def open_artifact(
    path: str | Path,
    device: str = "cpu",
    threads: int = 0,
    binarized: bool | None = None,
    runtime: str = DEFAULT_RUNTIME,
    compute: str = "f32",
) -> Artifact:
    """Open any file binexport knows on the runtime it deploys with, detected from its content.

    Model files (checkpoint, packed, ``.bwn``) run on the PyTorch reference; ONNX files on ``runtime``
    (ONNX Runtime or OpenVINO; torch is not imported for them).

    Args:
        path: the file.
        device: 'cpu' or 'cuda' (resolve 'auto' first with :func:`binexport.runtimes.plan.resolve_device`).
        threads: intra-op threads for the runtime (0: its default); at most :func:`~.plan.max_threads`.
        binarized: override ``log.txt`` about ``--binarize`` for training checkpoints.
        runtime: a runtime id of :data:`~.plan.RUNTIMES` or an alias (``ort``), for ONNX files (model files
            always run on the PyTorch reference, whatever is given).
        compute: one of :data:`~.base.COMPUTE_PRECISIONS`, for OpenVINO (``f32``: exact; ``bf16``: lossy).

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
    from binexport.formats.onnx.bounds import check_onnx_bounds

    rt_id = runtime_id(runtime)
    if fmt.name == "ort":
        return _open_ort(p, fmt.name, device, threads, rt_id)
    bounds = check_onnx_bounds(p)  # an ONNX file is a program: size what it can allocate before a session loads it
    if rt_id == "openvino":
        from binexport.runtimes.openvino import open_compiled

        try:
            rt: Runtime = open_compiled(str(p), device, threads, compute)
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
    return _onnx_artifact(p, fmt.name, rt, bounds)


def _onnx_artifact(p: Path, fmt: str, rt: Runtime, bounds: Any = None) -> Artifact:
    """An opened ONNX or ``.ort`` file, its weight encoding read from its metadata."""
    from binexport.formats.onnx import WEIGHT_ALIASES

    meta = rt.metadata  # type: ignore[attr-defined]
    weights, notes = meta.get("binexport.weights"), []
    if weights is None:
        weights = "float32"
        notes.append("no binexport.weights metadata: held to the float32 tolerance")
    return Artifact(p, fmt, WEIGHT_ALIASES.get(weights, weights), rt, None, meta, notes, bounds)


def _open_ort(p: Path, fmt: str, device: str, threads: int, runtime: str) -> Artifact:
    """A ``.ort`` file on ONNX Runtime, after :func:`binexport.formats.ort.check_ort_bounds` (ONNX's checker can't
    read it); OpenVINO does not read the format."""
    from binexport.formats.ort import check_ort_bounds
    from binexport.runtimes.ort import open_session, ort_errors

    if runtime != "onnxruntime":
        raise InputError(f"{p}: a .ort file runs on ONNX Runtime only; use --runtime ort (OpenVINO reads .onnx)")
    check_ort_bounds(p)
    stored = "as stored in the .ort file (ONNX Runtime optimised it when it was written)"
    try:
        rt = open_session(p.read_bytes(), device, threads, kernels=stored)  # ONNX Runtime tells the format itself
    except (*ort_errors(), ValueError, TypeError) as e:  # type: ignore[misc]
        raise InputError(f"{p}: ONNX Runtime cannot open it ({str(e).strip()[:200]})") from None
    return _onnx_artifact(p, fmt, rt)


def open_run(run: Run, threads: int = 0, binarized: bool | None = None) -> Artifact:
    """:func:`open_artifact` for one row of a run plan (:func:`binexport.runtimes.plan.plan_runs`)."""
    return open_artifact(run.path, run.device, threads, binarized, run.runtime, run.compute)


def open_runtime(
    path: str | Path, device: str = "cpu", threads: int = 0, runtime: str = DEFAULT_RUNTIME, compute: str = "f32"
) -> tuple[Runtime, dict[str, Any]]:
    """:func:`open_artifact`, as (runtime, a JSON-able description): what the bench worker needs."""
    a = open_artifact(path, device, threads, runtime=runtime, compute=compute)
    info: dict[str, Any] = {"format": a.format, "weights": a.weights, "file_bytes": a.path.stat().st_size}
    if a.bounds is not None:
        info["bounds"] = {k: v for k, v in vars(a.bounds).items() if isinstance(v, int)}
    return a.session, info
