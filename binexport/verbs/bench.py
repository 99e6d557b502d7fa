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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binexport.errors import InputError
from binexport.report import Report
from binexport.runtimes.base import Progress
from binexport.runtimes.cpu import cpu_info
from binexport.runtimes.signals import stop_on_signals
from binexport.runtimes.worker import Worker, probe_timeout, slice_timeout

DEFAULT_BATCH_SIZE = 64
DEFAULT_SECONDS = 10.0
#: Timing rounds: each artifact's time is split over this many interleaved slices.
ROUNDS = 5
#: The label of bench's progress: one interleaved timing of every row (``progress(TIMING, done, total)``).
TIMING = "timing (interleaved)"


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
    precision: str = "f32"  # the compute precision the runtime reports (OpenVINO bf16 is lossy; not the weights')
    kernels: str = ""  # which kernels ran, as the runtime names them ("" where it does not say)
    # what the loaded artifact holds resident (RSS after loading minus after an empty session of its runtime,
    # both once freed memory went back to the OS: runtimes/memory.py); None where the OS doesn't say
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
    runtimes: list[str] = field(default_factory=lambda: ["onnxruntime"])  # the runtime ids ONNX files ran on
    precision: str = "f32"  # asked of OpenVINO; each row says what really ran

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for row, r in zip(d["rows"], self.rows, strict=True):
            row["model_rss_bytes"] = r.model_rss_bytes
        return d


def bench(
    artifacts: list[str | Path],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seconds: float = DEFAULT_SECONDS,
    device: str = "auto",
    threads: int = 0,
    runtime: str | Sequence[str] = "onnxruntime",
    precision: str = "f32",
    progress: Progress | None = None,
) -> BenchReport:
    """Measure what each artifact costs to deploy, side by side.

    Args:
        artifacts: files binexport knows (checkpoint, packed, ``.bwn``, ONNX of any weight encoding), or
            training run folders (their one checkpoint, :func:`binexport.formats.resolve`).
        batch_size: the batch of the throughput measurement (latency is always batch 1).
        seconds: timing budget per artifact, split between latency and throughput over interleaved rounds.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: intra-op threads of each runtime (0: the runtime's default, one per core), at most
            :func:`binexport.runtimes.plan.max_threads`.
        runtime: ``onnxruntime`` (alias ``ort``), ``openvino`` or ``all`` (or several): each ONNX file gets one
            row per runtime; model files (checkpoint, packed, ``.bwn``) one row on the PyTorch reference
            (``torch``), as :func:`binexport.runtimes.plan.plan_runs` plans them.
        precision: ``f32`` (exact) or ``bf16`` (OpenVINO's lossy bfloat16 execution; its rows are labelled).
        progress: ``progress(TIMING, done, total)`` after every timing slice (:data:`TIMING`: one label, as
            every row is timed in turn).

    Returns:
        A :class:`BenchReport`; rows are in the order given (an ONNX file's runtimes in turn), ratios relative
        to the first.

    Raises:
        InputError: bad options, a runtime that is not installed, a file the runtime can't load, or a worker
            that gave no answer in time (each answer has a deadline: :mod:`binexport.runtimes.worker`).
        Interrupted: SIGINT, SIGTERM or SIGHUP came; every worker was ended first (:mod:`binexport.runtimes.signals`).

    Example:
        >>> r = binexport.bench(["model.onnx", "model-int8.onnx"], batch_size=64)   # doctest: +SKIP
        >>> r.rows[1].speed_ratio                                                    # doctest: +SKIP
        3.4
    """
    from binexport import __version__
    from binexport.runtimes.base import check_batch_size
    from binexport.runtimes.plan import check_threads, plan_runs, runtime_notes

    if not artifacts:
        raise InputError("bench needs at least one ARTIFACT file")
    check_batch_size(batch_size)
    if not (np.isfinite(seconds) and 0 < seconds <= 3600):
        raise InputError(f"--seconds must be a number of seconds in (0, 3600], got {seconds}")
    check_threads(threads)
    plan = plan_runs(artifacts, runtime, precision, device)
    workers: list[Worker] = []
    refused: list[str] = []
    with stop_on_signals():  # a signal or an error ends every worker started so far
        for run in plan.runs:
            try:
                workers.append(Worker(run.path, run.device, threads, run.runtime, run.compute))
            except InputError as e:  # OpenVINO 2026.4 reads no INT2: the file's ONNX Runtime row stays, a note says so
                from binexport.runtimes.openvino import int2_refusal

                same = [str(w.info.get("weights")) for w in workers if w.path == run.path]
                refused.append(f"{run.path.name}: {int2_refusal(run.runtime, same, e)}")
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
    cpu = cpu_info()
    flags = cpu.int8_flags
    notes = []
    if plan.device == "cpu" and not cpu.has_int8_dot:
        notes.append("this CPU has no VNNI or AMX: int8 convolutions run without their int8 dot-product instructions")
    notes += kernel_notes(rows, flags) + runtime_notes(runtime) + refused
    return BenchReport(
        cpu.name,
        flags,
        os.cpu_count() or 0,
        plan.device,
        threads,
        batch_size,
        seconds,
        rows,
        __version__,
        notes,
        plan.runtimes,
        precision,
    )


def kernel_notes(rows: list[BenchRow], flags: list[str]) -> list[str]:
    """Where the kernels that ran leave int8 speed unused, which file or runtime gets it.

    The int8 weight zero point picks the kernel (docs/runtimes.md): with 0, ONNX Runtime's symmetric convolution
    has no AMX kernel; with 1, OpenVINO runs the convolutions in float32. Both are read from the kernels the
    runtimes report, not assumed.

    Args:
        rows: the measured rows (their ``weights``, ``runtime`` and ``kernels``).
        flags: the CPU's flags (:func:`binexport.runtimes.cpu.cpu_info`).

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
    workers: list[Worker], batch: int, seconds: float, progress: Progress | None
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
                progress(TIMING, done, total)
    return lat, thr


def _row(w: Worker, peak: int, lat: list[float], thr: list[float], batch: int) -> BenchRow:
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
        precision=str(info.get("compute", "f32")),
        kernels=w.kernels,
        weights_rss_bytes=None if info.get("rss_weights") is None else int(info["rss_weights"]),
    )
