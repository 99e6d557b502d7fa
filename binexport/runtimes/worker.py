"""One artifact in a process of its own, timed on request: bench's worker, both sides of its protocol.

Each artifact gets a fresh interpreter, so its peak RSS is its own (an ONNX
file is served without importing torch, as it would be deployed), and the
parent can interleave timing rounds of several artifacts so that other load
on the machine hits them alike. The protocol is one JSON object per line:

- the parent (:class:`Worker`) starts ``python -m binexport.runtimes.worker PATH DEVICE THREADS [RUNTIME
  [COMPUTE]]`` (RUNTIME a runtime id, ``torch`` for model files, default ``onnxruntime``; COMPUTE ``f32`` or
  ``bf16``) in a process group of its own;
- the child (:func:`serve`) loads the artifact and answers ``{"ok": true, "load_s", "provider", "runtime",
  "compute", "input_kind", "weights", "rss_weights", ...}`` (or ``{"ok": false, "error"}`` and exits);
  ``rss_weights`` is what the loaded artifact holds resident (:func:`~.memory.settled_rss` after loading minus
  the same after an empty session of its runtime: for an ONNX file, the weights as the session keeps them),
  null where the OS doesn't say;
- ``{"cmd": "time", "batch": B, "iters": K}`` runs K forward calls of B images and answers ``{"ok": true,
  "seconds": [...]}``;
- ``{"cmd": "quit"}`` answers ``{"ok": true, "peak_rss": bytes, "kernels": "..."}`` (which kernels ran, as the
  runtime names them, asked after timing) and exits.

The parent awaits every answer with a deadline (:data:`LOAD_TIMEOUT_S`, :func:`probe_timeout`,
:func:`slice_timeout`, :data:`QUIT_TIMEOUT_S`) and kills the worker's process group when one passes.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.runtimes.memory import address_space, empty_session_rss, limit_address_space, peak_rss, settled_rss
from binexport.runtimes.signals import register, starting, unregister

# How long the parent waits for each answer of a worker before it kills the worker's process group and says
# so in one line (exit 2): a worker that hangs (1,024 threads on 2 CPUs, a runtime stuck in a lock) must not
# hang bench. Each deadline is what the request should take, times a factor for a loaded machine, plus a margin:
#: Loading: the interpreter, the runtime's libraries (torch ~2 s) and the file (a 100 MB float32 ONNX ~1 s).
LOAD_TIMEOUT_S = 120.0
#: A probe (the first call at a batch size, of unknown speed): a margin plus a pessimistic second per image
#: for its two calls (WRN-20-10 float32 runs about 100 images/s on 2 cores of a shared AMD EPYC).
PROBE_TIMEOUT_S = 60.0
PROBE_S_PER_IMAGE = 1.0
#: A timing slice: ``SLACK`` x what the probe said it takes (iters + 1 calls), plus ``MARGIN_S``.
SLICE_SLACK = 4.0
SLICE_MARGIN_S = 30.0
#: Quitting (it reports its peak memory and exits).
QUIT_TIMEOUT_S = 10.0


def probe_timeout(batch: int) -> float:
    """Seconds a probe (an untimed and a timed call of ``batch`` images, speed unknown) may take."""
    return PROBE_TIMEOUT_S + 2 * batch * PROBE_S_PER_IMAGE


def slice_timeout(per_call_s: float, iters: int) -> float:
    """Seconds a slice of ``iters`` timed calls (plus the untimed first) may take, ``per_call_s`` each."""
    return SLICE_SLACK * per_call_s * (iters + 1) + SLICE_MARGIN_S


# --- the parent's side ---


class Worker:
    """The parent's handle on one worker process: every answer awaited with a deadline.

    The worker runs in a process group of its own, so that a deadline or a signal (:mod:`.signals`) kills it
    with whatever it started (and a Ctrl-C at the terminal reaches bench alone). ``command`` replaces the
    worker's command line (tests).

    Raises:
        InputError: the worker could not load the file, or gave no answer within :data:`LOAD_TIMEOUT_S`.
    """

    def __init__(
        self,
        path: Path,
        device: str,
        threads: int,
        runtime: str = "onnxruntime",
        compute: str = "f32",
        command: list[str] | None = None,
    ) -> None:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.path = path
        self.threads = threads
        self.kernels = ""
        self.err = tempfile.TemporaryFile()  # the worker's stderr: its last line explains a crash
        argv = command or [sys.executable, "-m", __name__, str(path), device, str(threads), runtime, compute]
        with starting():  # a signal now waits until the worker is registered, then kills it with the others
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.err,
                text=True,
                env=env,
                start_new_session=True,
            )
            register(self)
        self.lines: queue.Queue[str] = queue.Queue()
        # a thread reads the answers: a pipe read can't time out, a queue get can
        threading.Thread(target=self._pump, daemon=True).start()
        self.info = self._read(LOAD_TIMEOUT_S, "loading the file")
        if not self.info.get("ok"):
            self.close()
            raise InputError(self.info.get("error") or f"{path}: the benchmark worker could not load it")

    def _pump(self) -> None:
        stream = self.proc.stdout
        if stream is not None:
            for line in stream:
                self.lines.put(line)
        self.lines.put("")

    def _read(self, timeout: float, doing: str) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            threads = f"--threads {self.threads}" if self.threads else "the default threads"
            raise InputError(
                f"{self.path}: the benchmark worker gave no answer within {timeout:.0f} s while "
                f"{doing}, so it was stopped; with {threads} on {os.cpu_count() or 1} CPUs, try "
                "fewer --threads, a smaller --batch-size or fewer --seconds, or a less loaded "
                "machine"
            ) from None
        if not line:
            code = self.proc.wait()
            self.err.seek(0)
            last = (self.err.read().decode(errors="replace").strip().splitlines() or [""])[-1][:200]
            why = f": {last}" if last else ""
            return {"ok": False, "error": f"{self.path}: the benchmark worker died (exit {code}){why}"}
        try:
            return dict(json.loads(line))
        except (ValueError, TypeError):
            return {
                "ok": False,
                "error": f"{self.path}: the benchmark worker answered {line.strip()[:80]!r}, not a JSON object",
            }

    def ask(self, req: dict[str, Any], timeout: float, doing: str) -> dict[str, Any]:
        """Send one request and await its answer for at most ``timeout`` seconds (``doing`` names it in errors)."""
        if self.proc.stdin is None or self.proc.poll() is not None:
            raise InputError(f"{self.path}: the benchmark worker is closed")
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died: _read reports why
            pass
        out = self._read(timeout, doing)
        if not out.get("ok"):
            raise InputError(out.get("error") or f"{self.path}: the benchmark worker failed")
        return out

    def time(self, batch: int, iters: int, timeout: float) -> list[float]:
        """Seconds of each of ``iters`` forward calls of ``batch`` images."""
        doing = f"timing {iters} call{'s' * (iters != 1)} of {batch} image{'s' * (batch != 1)}"
        return [float(s) for s in self.ask({"cmd": "time", "batch": batch, "iters": iters}, timeout, doing)["seconds"]]

    def kill(self) -> None:
        """SIGKILL the worker's process group (it and anything it started), then reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (OSError, AttributeError):  # gone already, or no process groups (Windows)
                self.proc.kill()
        self.proc.wait()
        unregister(self)

    def close(self) -> int:
        """Ask the worker to quit (its peak RSS and kernels), then end it; returns the peak RSS in bytes."""
        peak = 0
        if self.proc.poll() is None:
            try:
                out = self.ask({"cmd": "quit"}, QUIT_TIMEOUT_S, "quitting")
                peak, self.kernels = int(out.get("peak_rss", 0)), str(out.get("kernels") or "")
            except (InputError, OSError, ValueError):
                pass
        self.kill()
        self.err.close()
        return peak


# --- the child's side ---


def _answer(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _inputs(kind: str, batch: int) -> np.ndarray:
    from binexport.data import normalize
    from binexport.runtimes.base import select_input

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


def serve(path: str, device: str, threads: int, runtime_name: str = "onnxruntime", compute: str = "f32") -> int:
    """Load ``path`` on ``runtime_name`` (ONNX files) and answer timing requests on stdin until told to quit."""
    exit_with_parent()
    from binexport import formats
    from binexport.errors import BinexportError
    from binexport.runtimes.artifact import open_runtime
    from binexport.runtimes.plan import RUNTIME_ALIASES

    try:
        _, fmt = formats.detect_file(path)
        # the runtime's libraries are imported before the clock starts: load time is the file's, not Python's
        if fmt.read is not None:
            import binexport.runtimes.torch_ref  # noqa: F401
        elif RUNTIME_ALIASES.get(runtime_name, runtime_name) == "openvino":
            from binexport.runtimes.openvino import import_openvino

            import_openvino()
        else:
            import onnxruntime  # noqa: F401

            import binexport.runtimes.ort  # noqa: F401
        baseline = empty_session_rss(fmt.read is None, device, threads, runtime_name, compute)
        before = peak_rss()  # the interpreter and the runtime's libraries
        address_before = address_space()
        t0 = time.perf_counter()
        runtime, info = open_runtime(path, device, threads, runtime_name, compute)
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
            "compute": runtime.compute,
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
