"""One artifact in a process of its own, timed on request: what ``bench`` measures memory and speed with.

Each artifact gets a fresh interpreter, so its peak RSS is its own (an ONNX
file is served without importing torch, as it would be deployed), and the
parent can interleave timing rounds of several artifacts so that other load
on the machine hits them alike. The protocol is one JSON object per line:

- the parent starts ``python -m binexport.runtimes.worker PATH DEVICE THREADS [RUNTIME [PRECISION]]``
  (RUNTIME ``ort`` or ``openvino`` for ONNX files, default ``ort``; PRECISION ``f32`` or ``bf16``);
- the worker loads the artifact and answers ``{"ok": true, "load_s", "provider", "input_kind", "weights", ...}``
  (or ``{"ok": false, "error"}`` and exits);
- ``{"cmd": "time", "batch": B, "iters": K}`` runs K forward calls of B images and answers ``{"ok": true,
  "seconds": [...]}``;
- ``{"cmd": "quit"}`` answers ``{"ok": true, "peak_rss": bytes, "kernels": "..."}`` (which kernels ran, as the
  runtime names them, asked after timing) and exits.
"""

from __future__ import annotations

import json
import os
import resource
import sys
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
        before = peak_rss()  # the interpreter and the runtime's libraries
        t0 = time.perf_counter()
        runtime, info = open_runtime(path, device, threads, runtime_name, precision)
    except BinexportError as e:
        _answer({"ok": False, "error": str(e)})
        return 2
    load_s = time.perf_counter() - t0
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
        }
    )
    cache: dict[int, np.ndarray] = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            _answer({"ok": True, "peak_rss": peak_rss(), "kernels": runtime.kernels()})
            return 0
        batch, iters = int(req["batch"]), int(req["iters"])
        x = cache.setdefault(batch, _inputs(runtime.input_kind, batch))
        _answer({"ok": True, "seconds": runtime.time_calls(x, iters)})
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess by bench
    sys.exit(serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:6]))
