"""What a worker measures and caps of its own memory (the one place ``/proc/self/status`` is read): its peak,
what it holds resident once freed memory went back to the OS, and an address-space cap.

Linux's ``/proc`` where it exists; elsewhere the ``resource`` module's figures,
and no address-space cap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
import tempfile


def _status_bytes(key: str) -> int | None:
    """One ``kB`` figure of ``/proc/self/status`` (``VmHWM``, ``VmSize``, ``VmRSS``) in bytes; None where it can't say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss() -> int:
    """This process's peak resident memory in bytes: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``, which a child
    inherits from the parent that forked it), else ``ru_maxrss``."""
    hwm = _status_bytes("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: What a worker running an ONNX graph may reserve beyond the bound its graph passed with (``OnnxBounds.peak_bound``)
#: and its address space before loading: runtime code, thread stacks, malloc arenas. Measured on WRN-20-10
#: (2 CPUs): ORT reserves 1.0-1.1 GiB of address space beyond its resident peak, OpenVINO 0.45-0.5 GiB.
ADDRESS_SLACK_BYTES = 2 << 30
#: ... plus this per intra-op thread (a stack and a malloc arena each).
ADDRESS_PER_THREAD_BYTES = 256 << 20


def address_space() -> int:
    """This process's virtual size now (``VmSize``), or 0 where /proc can't say."""
    return _status_bytes("VmSize") or 0


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
    return _status_bytes("VmRSS")


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


def empty_session_rss(onnx_file: bool, device: str, threads: int, runtime_name: str, compute: str) -> int | None:
    """:func:`settled_rss` after opening (and closing) an empty ONNX graph the way the artifact will be opened.

    The runtime's lazily loaded parts (OpenVINO's ONNX frontend and CPU plugin, ONNX Runtime's thread pools and
    providers, onnx for the bounds check) are then in the baseline, not in the artifact's figure. Model files run on
    the PyTorch reference, whose baseline is the interpreter with torch imported.
    """
    if onnx_file:
        from binexport.errors import BinexportError
        from binexport.runtimes.artifact import open_runtime

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "empty.onnx")
            with open(path, "wb") as f:
                f.write(_empty_onnx())
            try:
                runtime, _ = open_runtime(path, device, threads, runtime_name, compute)
                del runtime
            except BinexportError:  # the artifact's own load says what is wrong
                pass
    return settled_rss()
