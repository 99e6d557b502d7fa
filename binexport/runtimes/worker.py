"""One artifact in a process of its own, timed on request: what ``bench`` measures memory and speed with.

Each artifact gets a fresh interpreter, so its peak RSS is its own (an ONNX
file is served without importing torch, as it would be deployed), and the
parent can interleave timing rounds of several artifacts so that other load
on the machine hits them alike. The protocol is one JSON object per line:

- the parent starts ``python -m binexport.runtimes.worker PATH DEVICE THREADS [RUNTIME [PRECISION]]``
  (RUNTIME ``ort`` or ``openvino`` for ONNX files, default ``ort``; PRECISION ``f32`` or ``bf16``);
- the worker loads the artifact and answers ``{"ok": true, "load_s", "provider", "input_kind", "weights",
  "rss_weights", ...}`` (or ``{"ok": false, "error"}`` and exits); ``rss_weights`` is what the loaded artifact
  holds resident (:func:`settled_rss` after loading minus the same after an empty session of its runtime:
  for an ONNX file, the weights as the session keeps them), null where the OS doesn't say;
- ``{"cmd": "time", "batch": B, "iters": K}`` runs K forward calls of B images and answers ``{"ok": true,
  "seconds": [...]}``;
- ``{"cmd": "quit"}`` answers ``{"ok": true, "peak_rss": bytes, "kernels": "..."}`` (which kernels ran, as the
  runtime names them, asked after timing) and exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import resource
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np


def peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``, which a child
    inherits from the parent that forked it), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: What a worker running an ONNX graph may reserve beyond the bound its graph passed with (``OnnxBounds.peak_bound``)
#: and its address space before loading: runtime code, thread stacks, malloc arenas. Measured on WRN-20-10
#: (2 CPUs): ORT reserves 1.0-1.1 GiB of address space beyond its resident peak, OpenVINO 0.45-0.5 GiB.
ADDRESS_SLACK_BYTES = 2 << 30
#: ... plus this per intra-op thread (a stack and a malloc arena each).
ADDRESS_PER_THREAD_BYTES = 256 << 20


def address_space() -> int:
    """This process's virtual size now (``VmSize``), or 0 where /proc can't say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def limit_address_space(bounds: dict[str, int] | None, batch: int, threads: int, device: str, base: int) -> None:
    """Cap this worker's address space (``RLIMIT_AS``, soft) at what its graph's bound allows for ``batch`` images.

    The static bounds size every tensor a graph declares; this is the backstop for anything they miss: an
    allocation past it fails inside the runtime (an error the worker reports, or its death, which bench reports
    in one line) instead of taking the machine's memory. Not on CUDA (its driver reserves far more address
    space than it uses), not where /proc can't say, and only for ONNX graphs (``bounds`` given).
    """
    if bounds is None or device != "cpu" or not base:
        return
    peak = bounds["const_total_bytes"] + bounds["workspace_bytes"] + batch * bounds["image_total_bytes"]
    cap = base + peak + ADDRESS_SLACK_BYTES + ADDRESS_PER_THREAD_BYTES * (threads or os.cpu_count() or 1)
    try:
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (max(cap, address_space()), hard))
    except (OSError, ValueError):
        pass  # a platform without RLIMIT_AS: the static bounds still hold


def current_rss() -> int | None:
    """This process's resident memory now (``VmRSS``), in bytes; None where ``/proc`` doesn't say (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def settled_rss() -> int | None:
    """:func:`current_rss` once freed memory went back to the OS: Python's garbage collected, then glibc's
    ``malloc_trim(0)`` (every arena; skipped where the C library has none), so what is left is what is held."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed memory may stay resident, and counts
        pass
    return current_rss()


def _empty_onnx() -> bytes:
    """A weightless ONNX graph (one Relu on an image batch): an empty session's cost, to subtract."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "empty", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7).SerializeToString()


def empty_session_rss(onnx_file: bool, device: str, threads: int, runtime_name: str, precision: str) -> int | None:
    """:func:`settled_rss` after opening (and closing) an empty ONNX graph the way the artifact will be opened.

    The runtime's lazily loaded parts (OpenVINO's ONNX frontend and CPU plugin, ONNX Runtime's thread pools and
    providers, onnx for the bounds check) are then in the baseline, not in the artifact's figure. Model files run on
    the PyTorch reference, whose baseline is the interpreter with torch imported.
    """
    if onnx_file:
        from binexport.errors import BinexportError
        from binexport.runtimes import open_runtime

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "empty.onnx")
            with open(path, "wb") as f:
                f.write(_empty_onnx())
            try:
                runtime, _ = open_runtime(path, device, threads, runtime_name, precision)
                del runtime
            except BinexportError:  # the artifact's own load says what is wrong
                pass
    return settled_rss()


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _inputs(kind: str, batch: int) -> np.ndarray:
    from binexport.data import normalize
    from binexport.runtimes import select_input

    rng = np.random.default_rng(batch)
    pixels = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    return select_input(kind, pixels, normalize(pixels))


def exit_with_parent(poll_s: float = 0.5) -> None:
    """End this worker when the bench that started it is gone, however it went (even SIGKILL, which it can't catch).

    bench kills its workers' process groups on every signal it can catch; this covers the one it can't: the
    worker is re-parented when its parent dies, and a daemon thread that sees it exits at once.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def serve(path: str, device: str, threads: int, runtime_name: str = "ort", precision: str = "f32") -> int:
    """Load ``path`` on ``runtime_name`` (ONNX files) and answer timing requests on stdin until told to quit."""
    exit_with_parent()
    from binexport import formats
    from binexport.errors import BinexportError
    from binexport.runtimes import open_runtime

    try:
        _, fmt = formats.detect_file(path)
        # the runtime's libraries are imported before the clock starts: load time is the file's, not Python's
        if fmt.read is not None:
            import binexport.runtimes.torch_ref  # noqa: F401
        elif runtime_name == "openvino":
            from binexport.runtimes.openvino import import_openvino

            import_openvino()
        else:
            import onnxruntime  # noqa: F401

            import binexport.runtimes.ort  # noqa: F401
        baseline = empty_session_rss(fmt.read is None, device, threads, runtime_name, precision)
        before = peak_rss()  # the interpreter and the runtime's libraries
        address_before = address_space()
        t0 = time.perf_counter()
        runtime, info = open_runtime(path, device, threads, runtime_name, precision)
    except BinexportError as e:
        _answer({"ok": False, "error": str(e)})
        return 2
    load_s = time.perf_counter() - t0
    held = settled_rss()
    _answer(
        {
            "ok": True,
            "load_s": load_s,
            "provider": runtime.provider,
            "runtime": runtime.name,
            "precision": runtime.precision,
            "input_kind": runtime.input_kind,
            "rss_before_load": before,
            **info,
            "rss_after_load": peak_rss(),
            "rss_weights": None if held is None or baseline is None else max(0, held - baseline),
        }
    )
    cache: dict[int, np.ndarray] = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            _answer({"ok": True, "peak_rss": peak_rss(), "kernels": runtime.kernels()})
            return 0
        batch, iters = int(req["batch"]), int(req["iters"])
        limit_address_space(info.get("bounds"), batch, threads, device, address_before)
        x = cache.setdefault(batch, _inputs(runtime.input_kind, batch))
        _answer({"ok": True, "seconds": runtime.time_calls(x, iters)})
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess by bench
    sys.exit(serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:6]))
