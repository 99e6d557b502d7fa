"""Runtimes: the only places a model is run, every batching loop and every device decision.

Three runtimes share one surface (:class:`~.base.Runtime`), each named by its
runtime id: ``torch``, the PyTorch reference of the SPEC (:mod:`.torch_ref`, for
every model binexport reads), ``onnxruntime`` (:mod:`.ort`, for ONNX files; the
CLI's ``--runtime ort``) and, where its extra is installed, ``openvino``
(:mod:`.openvino`, ONNX files on the CPU). The rooms:

- :mod:`.base`: the Runtime class, the input kinds, the batching loops
  (``logits``, ``timed_logits``, :func:`~.base.stream_logits`), the batch-size bound;
- :mod:`.plan`: runtime ids, devices, threads, compute precision, and the run plan
  (:func:`~.plan.plan_runs`) that is verify's and bench's one fan-out;
- :mod:`.artifact`: :func:`~.artifact.open_artifact`, any file on the runtime it deploys with;
- :mod:`.rows`: a run plan's rows opened for verify, and verify's reference;
- :mod:`.ort_kernels`: what ONNX Runtime's optimised graph runs (``OrtRuntime.kernels()``);
- :mod:`.cpu`: the CPU's name and flags (the one ``/proc/cpuinfo`` reader);
- :mod:`.worker`: bench's worker process, parent and child sides, with their deadlines;
- :mod:`.signals`: bench's workers killed with bench on SIGINT, SIGTERM and SIGHUP;
- :mod:`.memory`: what a worker measures and caps of its own memory;
- :mod:`.openvino_apart`: OpenVINO compiles a file once in a child process first.

This face only re-exports; no module under it imports it back.
"""

from __future__ import annotations

from binexport.runtimes.artifact import Artifact, open_artifact, open_run, open_runtime
from binexport.runtimes.base import (
    COMPUTE_PRECISIONS,
    INPUT_KINDS,
    INPUT_NCHW,
    INPUT_NCHW_F16,
    INPUT_NCHW_PIXELS,
    INPUT_NCHW_PIXELS_F16,
    INPUT_NCHW_PYTORCHCV,
    INPUT_NCHW_PYTORCHCV_F16,
    INPUT_NHWC,
    MAX_BATCH_SIZE,
    STREAM_CHUNK,
    WARMUP,
    Progress,
    Runtime,
    check_batch_size,
    graph_input_kind,
    model_input_kind,
    select_input,
    stream_logits,
)
from binexport.runtimes.plan import (
    DEFAULT_RUNTIME,
    DEVICES,
    REFERENCE_RUNTIME,
    RUNTIME_ALIASES,
    RUNTIME_CHOICES,
    RUNTIMES,
    THREADS_PER_CPU,
    Plan,
    Run,
    check_compute,
    check_threads,
    is_onnx,
    max_threads,
    plan_runs,
    plan_runtimes,
    resolve_device,
    resolve_runtimes,
    runtime_device,
    runtime_id,
    runtime_notes,
)

__all__ = [
    "COMPUTE_PRECISIONS",
    "DEFAULT_RUNTIME",
    "DEVICES",
    "INPUT_KINDS",
    "INPUT_NCHW",
    "INPUT_NCHW_F16",
    "INPUT_NCHW_PIXELS",
    "INPUT_NCHW_PIXELS_F16",
    "INPUT_NCHW_PYTORCHCV",
    "INPUT_NCHW_PYTORCHCV_F16",
    "INPUT_NHWC",
    "MAX_BATCH_SIZE",
    "REFERENCE_RUNTIME",
    "RUNTIMES",
    "RUNTIME_ALIASES",
    "RUNTIME_CHOICES",
    "STREAM_CHUNK",
    "THREADS_PER_CPU",
    "WARMUP",
    "Artifact",
    "Plan",
    "Progress",
    "Run",
    "Runtime",
    "check_batch_size",
    "check_compute",
    "check_threads",
    "graph_input_kind",
    "is_onnx",
    "max_threads",
    "model_input_kind",
    "open_artifact",
    "open_run",
    "open_runtime",
    "plan_runs",
    "plan_runtimes",
    "resolve_device",
    "resolve_runtimes",
    "runtime_device",
    "runtime_id",
    "runtime_notes",
    "select_input",
    "stream_logits",
]
