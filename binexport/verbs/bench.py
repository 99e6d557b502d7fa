"""``binexport bench``: what each artifact costs to deploy: size, load time, memory, latency, throughput.

Each artifact runs in a process of its own (:mod:`binexport.runtimes.worker`)
on the runtime it deploys with, so its peak RSS is its own and an ONNX file is
measured without torch in the process. Timing is interleaved: round after
round, every artifact runs a slice of batch-1 calls and a slice of batch-N
calls, so load from elsewhere on the machine hits all of them alike and the
ratios to the first artifact stay fair. With ``runtime=`` an ONNX file gets one
row per runtime (ONNX Runtime, OpenVINO), and each row says which kernels ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from binexport.errors import InputError, Interrupted
from binexport.report import Report

DEFAULT_BATCH_SIZE = 64
DEFAULT_SECONDS = 10.0
#: Timing rounds: each artifact's time is split over this many interleaved slices.
ROUNDS = 5
#: CPU flags that decide int8 speed (ONNX Runtime's QLinearConv uses VNNI / AMX where present).
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "avx512_bf16")

#: The weight encoding OpenVINO's ONNX frontend can't read (INT2 tensors, 2026.4): its bench row becomes a note.
INT2 = "int2"
#: ``progress(done, total)`` after every timing slice.
Progress = Callable[[int, int], None]

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


@dataclass
class BenchRow:
    """One artifact's numbers; ``*_ratio`` compare with the first artifact (higher is better for speed)."""

    path: str
    format: str
    weights: str
    runtime: str
    provider: str
    file_bytes: int
    load_s: float
    peak_rss_bytes: int
    runtime_rss_bytes: int  # peak RSS once the runtime's libraries were imported, before the file was loaded
    latency_ms_median: float
    latency_ms_p90: float
    images_per_s: float
    batch_size: int
    speed_ratio: float = 1.0
    latency_ratio: float = 1.0
    size_ratio: float = 1.0
    rss_ratio: float = 1.0
    model_rss_ratio: float = 1.0  # of peak RSS above what the runtime's libraries take
    load_ratio: float = 1.0
    precision: str = "f32"  # the compute precision the runtime reports (OpenVINO bf16 is lossy)
    kernels: str = ""  # which kernels ran, as the runtime names them ("" where it does not say)
    # what the loaded artifact holds resident (RSS after loading minus after an empty session of its runtime,
    # both once freed memory went back to the OS: runtimes/worker.py); None where the OS doesn't say
    weights_rss_bytes: int | None = None

    @property
    def model_rss_bytes(self) -> int:
        """Peak RSS the model itself adds: the peak minus what the interpreter and runtime take before loading."""
        return max(0, self.peak_rss_bytes - self.runtime_rss_bytes)


@dataclass
class BenchReport(Report):
    """Every row, and the machine it was measured on."""

    cpu: str
    cpu_flags: list[str]
    cores: int
    device: str
    threads: int
    batch_size: int
    seconds: float
    rows: list[BenchRow]
    version: str
    notes: list[str] = field(default_factory=list)
    runtimes: list[str] = field(default_factory=lambda: ["ort"])  # the runtimes ONNX files ran on
    precision: str = "f32"  # asked of OpenVINO; each row says what really ran

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for row, r in zip(d["rows"], self.rows, strict=True):
            row["model_rss_bytes"] = r.model_rss_bytes
        return d


def cpu_info() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`INT8_FLAGS` it has (Linux ``/proc/cpuinfo``; else platform)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return name, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            name = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return name, [f for f in INT8_FLAGS if f in flags]


#: Signals after which bench ends its workers before it exits (one line on stderr, exit 128 + the signal).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class _Stop:
    """Process-wide, as signal handlers are: the workers alive, and a signal that came while one was starting.

    A worker is registered the moment it exists, so no signal can leave one unkilled: while a worker is being
    started (or the others killed) the handler only records the signal, and it is raised right after.
    """

    live: ClassVar[list[_Worker]] = []
    defer: ClassVar[bool] = False
    pending: ClassVar[int] = 0

    @classmethod
    def handler(cls, signum: int, frame: Any) -> None:
        if cls.defer:
            cls.pending = cls.pending or signum
            return
        raise _interrupted(signum)

    @classmethod
    def raise_pending(cls) -> None:
        cls.defer = False
        if cls.pending:
            signum, cls.pending = cls.pending, 0
            raise _interrupted(signum)

    @classmethod
    def kill_all(cls) -> None:
        """SIGKILL every live worker's process group, a second signal waiting until all are gone."""
        cls.defer = True
        try:
            while cls.live:
                cls.live.pop().kill()
        finally:
            cls.defer = False


def _interrupted(signum: int) -> Interrupted:
    name = signal.Signals(signum).name
    return Interrupted(signum, f"interrupted by {name}; the benchmark workers were stopped")


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """While bench runs: SIGINT, SIGTERM and SIGHUP end every worker (their process groups), then bench.

    The handlers are set explicitly, whatever the process inherited (under ``nohup`` SIGHUP is ignored, in a
    background job SIGINT), and the previous ones are put back. Off the main thread (where Python can't set
    handlers) the workers still end on any exception.
    """
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            previous[s] = signal.signal(s, _Stop.handler)
    try:
        yield
    except BaseException:
        _Stop.kill_all()
        raise
    finally:
        _Stop.kill_all()
        for s, h in previous.items():
            signal.signal(s, h)
        _Stop.pending = 0


class _Worker:
    """The parent's handle on one worker process: every answer awaited with a deadline.

    The worker runs in a process group of its own, so that a deadline or a signal kills it with whatever it
    started (and a Ctrl-C at the terminal reaches bench alone). ``command`` replaces the worker's command line
    (tests).
    """

    def __init__(
        self,
        path: Path,
        device: str,
        threads: int,
        runtime: str = "ort",
        precision: str = "f32",
        command: list[str] | None = None,
    ) -> None:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.path = path
        self.threads = threads
        self.kernels = ""
        self.err = tempfile.TemporaryFile()  # the worker's stderr: its last line explains a crash
        argv = command or [
            sys.executable,
            "-m",
            "binexport.runtimes.worker",
            str(path),
            device,
            str(threads),
            runtime,
            precision,
        ]
        _Stop.defer = True  # a signal now waits until the worker is registered, then kills it with the others
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.err,
                text=True,
                env=env,
                start_new_session=True,
            )
            _Stop.live.append(self)
        finally:
            _Stop.raise_pending()
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
        if self in _Stop.live:
            _Stop.live.remove(self)

    def close(self) -> int:
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


def probe_timeout(batch: int) -> float:
    """Seconds a probe (an untimed and a timed call of ``batch`` images, speed unknown) may take."""
    return PROBE_TIMEOUT_S + 2 * batch * PROBE_S_PER_IMAGE


def slice_timeout(per_call_s: float, iters: int) -> float:
    """Seconds a slice of ``iters`` timed calls (plus the untimed first) may take, ``per_call_s`` each."""
    return SLICE_SLACK * per_call_s * (iters + 1) + SLICE_MARGIN_S


def bench(
    artifacts: list[str | Path],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seconds: float = DEFAULT_SECONDS,
    device: str = "auto",
    threads: int = 0,
    runtime: str | Sequence[str] = "ort",
    precision: str = "f32",
    progress: Progress | None = None,
) -> BenchReport:
    """Measure what each artifact costs to deploy, side by side.

    Args:
        artifacts: files binexport knows (checkpoint, packed, ``.bwn``, ONNX of any weight encoding), or
            training run folders (:func:`binexport.formats.resolve`).
        batch_size: the batch of the throughput measurement (latency is always batch 1).
        seconds: timing budget per artifact, split between latency and throughput over interleaved rounds.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: intra-op threads of each runtime (0: the runtime's default, one per core), at most
            :func:`binexport.runtimes.max_threads`.
        runtime: ``ort``, ``openvino`` or ``all`` (or several): each ONNX file gets one row per runtime;
            model files (checkpoint, packed, ``.bwn``) one row on the PyTorch reference.
        precision: ``f32`` (exact) or ``bf16`` (OpenVINO's lossy bfloat16 execution; its rows are labelled).
        progress: ``progress(done, total)`` after every timing slice.

    Returns:
        A :class:`BenchReport`; rows are in the order given (an ONNX file's runtimes in turn), ratios relative
        to the first.

    Raises:
        InputError: bad options, a runtime that is not installed, a file the runtime can't load, or a worker
            that gave no answer in time (each answer has a deadline: :data:`LOAD_TIMEOUT_S`,
            :func:`probe_timeout`, :func:`slice_timeout`).

    Example:
        >>> r = binexport.bench(["model.onnx", "model-int8.onnx"], batch_size=64)   # doctest: +SKIP
        >>> r.rows[1].speed_ratio                                                    # doctest: +SKIP
        3.4
    """
    from binexport import __version__, formats
    from binexport.runtimes import check_threads, is_onnx, plan_runtimes, runtime_notes

    if not artifacts:
        raise InputError("bench needs at least one ARTIFACT file")
    if not 1 <= batch_size <= 4096:
        raise InputError(f"--batch-size must be 1..4096, got {batch_size}")
    if not (np.isfinite(seconds) and 0 < seconds <= 3600):
        raise InputError(f"--seconds must be a number of seconds in (0, 3600], got {seconds}")
    check_threads(threads)
    runtimes, dev, devs = plan_runtimes(runtime, precision, device)
    artifacts = [formats.resolve(a) for a in artifacts]  # a training run folder: its one checkpoint
    workers: list[_Worker] = []
    refused: list[str] = []
    with _stop_on_signals():  # a signal or an error ends every worker started so far
        for a in artifacts:
            for rt in runtimes if is_onnx(a) else ["ort"]:  # model files: the PyTorch reference, one row
                try:
                    workers.append(
                        _Worker(Path(a), devs.get(rt, dev), threads, rt, precision if rt == "openvino" else "f32")
                    )
                except InputError as e:
                    if rt != "openvino" or not any(
                        w.path == Path(a) and w.info.get("weights") == INT2 for w in workers
                    ):
                        raise
                    from binexport.runtimes.openvino import int2_refusal

                    refused.append(f"{Path(a).name}: {int2_refusal(str(e))}")
        lat, thr = _measure(workers, batch_size, seconds, progress)
        peaks = [w.close() for w in workers]
    rows = [_row(w, peak, lat[i], thr[i], batch_size) for i, (w, peak) in enumerate(zip(workers, peaks, strict=True))]
    for r in rows[1:]:
        base = rows[0]
        r.speed_ratio = r.images_per_s / base.images_per_s if base.images_per_s else 0.0
        r.latency_ratio = base.latency_ms_median / r.latency_ms_median if r.latency_ms_median else 0.0
        r.size_ratio = r.file_bytes / base.file_bytes if base.file_bytes else 0.0
        r.rss_ratio = r.peak_rss_bytes / base.peak_rss_bytes if base.peak_rss_bytes else 0.0
        r.model_rss_ratio = r.model_rss_bytes / base.model_rss_bytes if base.model_rss_bytes else 0.0
        r.load_ratio = r.load_s / base.load_s if base.load_s else 0.0
    cpu, flags = cpu_info()
    notes = []
    if dev == "cpu" and not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags):
        notes.append("this CPU has no VNNI or AMX: int8 convolutions run without their int8 dot-product instructions")
    notes += kernel_notes(rows, flags) + runtime_notes(runtime) + refused
    return BenchReport(
        cpu,
        flags,
        os.cpu_count() or 0,
        dev,
        threads,
        batch_size,
        seconds,
        rows,
        __version__,
        notes,
        runtimes,
        precision,
    )


def kernel_notes(rows: list[BenchRow], flags: list[str]) -> list[str]:
    """Where the kernels that ran leave int8 speed unused, which file or runtime gets it.

    The int8 weight zero point picks the kernel (docs/runtimes.md): with 0, ONNX Runtime's symmetric convolution
    has no AMX kernel; with 1, OpenVINO runs the convolutions in float32. Both are read from the kernels the
    runtimes report, not assumed.

    Args:
        rows: the measured rows (their ``weights``, ``runtime`` and ``kernels``).
        flags: the CPU's flags (:func:`cpu_info`).

    Returns:
        One sentence per int8 row that runs slower than the file allows, naming the fix.
    """
    out = []
    for r in rows:
        if r.weights != "int8" or not r.kernels:
            continue
        name = Path(r.path).name
        if r.runtime == "openvino" and "_I8" not in r.kernels.split(";")[0]:
            out.append(
                f"{name} on OpenVINO: no int8 convolution ran (its weight zero point is not 0), so the convs ran "
                "in float32; export with --weight-zero-point 0 (the default) for OpenVINO"
            )
        if r.runtime == "onnxruntime" and "weight zp = 0" in r.kernels and "amx_int8" in flags:
            out.append(
                f"{name} on ONNX Runtime: this CPU has AMX, but weight zero point 0 selects MLAS's symmetric "
                "convolution, which has no AMX kernel; run it with --runtime openvino, or export with "
                "--weight-zero-point 1 for ONNX Runtime"
            )
    return out


def _measure(
    workers: list[_Worker], batch: int, seconds: float, progress: Progress | None
) -> tuple[list[list[float]], list[list[float]]]:
    """Interleaved rounds of batch-1 and batch-N calls; per worker, every call's seconds."""
    lat: list[list[float]] = [[] for _ in workers]
    thr: list[list[float]] = [[] for _ in workers]
    # one probe call of each size sizes the slices so each takes about seconds / (2 * ROUNDS)
    per_slice = seconds / (2 * ROUNDS)
    plan = []
    for w in workers:
        one = max(min(w.time(1, 1, probe_timeout(1))), 1e-5)
        many = max(min(w.time(batch, 1, probe_timeout(batch))), 1e-5)
        plan.append((one, max(1, int(per_slice / one)), many, max(1, int(per_slice / many))))
    total, done = ROUNDS * len(workers), 0
    for _ in range(ROUNDS):
        for i, w in enumerate(workers):
            one, n1, many, nb = plan[i]
            lat[i] += w.time(1, n1, slice_timeout(one, n1))
            thr[i] += w.time(batch, nb, slice_timeout(many, nb))
            done += 1
            if progress is not None:
                progress(done, total)
    return lat, thr


def _row(w: _Worker, peak: int, lat: list[float], thr: list[float], batch: int) -> BenchRow:
    info = w.info
    ms = np.asarray(lat) * 1000
    return BenchRow(
        path=str(w.path),
        format=info["format"],
        weights=info["weights"],
        runtime=info["runtime"],
        provider=info["provider"],
        file_bytes=int(info["file_bytes"]),
        load_s=float(info["load_s"]),
        peak_rss_bytes=peak,
        runtime_rss_bytes=int(info.get("rss_before_load", 0)),
        latency_ms_median=float(np.median(ms)),
        latency_ms_p90=float(np.percentile(ms, 90)),
        images_per_s=batch * len(thr) / sum(thr) if thr else 0.0,
        batch_size=batch,
        precision=str(info.get("precision", "f32")),
        kernels=w.kernels,
        weights_rss_bytes=None if info.get("rss_weights") is None else int(info["rss_weights"]),
    )
