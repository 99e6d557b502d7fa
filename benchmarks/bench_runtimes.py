"""ONNX Runtime against OpenVINO on the same ONNX files of the real published WRN-20-10, side by side.

One ``binexport.bench`` call per batch size and precision with ``runtime="all"``: every file runs on both
runtimes, each row in its own process, all rows interleaved round by round, so load from elsewhere on the
machine hits both runtimes alike; ratios are to the first row (float32 on ONNX Runtime). OpenVINO runs with its
precision hint pinned to f32 (exact); ``--bf16`` adds a run where OpenVINO computes in bfloat16 (lossy, where
the CPU has bfloat16 instructions; ONNX Runtime rows stay f32). Each row says which kernels ran (OpenVINO's
runtime-model primitive types; ONNX Runtime's where runtimes/ort.py reports them).

Usage: python benchmarks/bench_runtimes.py [--seconds 20] [--batches 64,1] [--bf16] [--threads 0]
       [--files F32.onnx 1BIT.onnx INT8.onnx]   (default: exports them from the real packed checkpoint)
Prints markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
from pathlib import Path

import binexport
from binexport.runtimes import resolve_runtimes
from binexport.runtimes.cpu import cpu_info

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CKPT = REAL / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"
DATA = REAL / "cifar100-partial"


def export(d: Path) -> list[Path]:
    files = [d / "wrn20-10-float32.onnx", d / "wrn20-10-1bit.onnx", d / "wrn20-10-int8.onnx"]
    binexport.export_onnx(CKPT, files[0], weights="float32")
    binexport.export_onnx(CKPT, files[1], weights="1-bit")
    binexport.export_onnx(CKPT, files[2], weights="int8", calibrate="CIFAR100", data_root=DATA)
    return files


def table(files: list[Path], batch: int, seconds: float, threads: int, precision: str) -> None:
    r = binexport.bench(
        files, batch_size=batch, seconds=seconds, device="cpu", threads=threads, runtime="all", precision=precision
    )
    print(
        f"\nbatch {batch}, OpenVINO precision {precision}; {r.cpu}, {r.cores} cores ({', '.join(r.cpu_flags)}); "
        f"threads {threads or 'default'}; {seconds:g} s per row, interleaved\n"
    )
    print(
        "| file | weights | runtime | precision | img/s at this batch | speed vs 1st | batch-1 ms (median / p90) "
        "| load s | peak RSS MiB | kernels |"
    )
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in r.rows:
        print(
            f"| {Path(row.path).name} | {row.weights} | {row.provider} | {row.precision} | {row.images_per_s:.1f} "
            f"| {row.speed_ratio:.2f}x | {row.latency_ms_median:.1f} / {row.latency_ms_p90:.1f} | {row.load_s:.2f} "
            f"| {row.peak_rss_bytes / 2**20:,.0f} | {row.kernels or '-'} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batches", default="64,1")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="also a run with OpenVINO in bfloat16 (lossy)")
    ap.add_argument("--files", nargs="+", type=Path, default=None)
    a = ap.parse_args()
    if resolve_runtimes("all") != ["onnxruntime", "openvino"]:
        raise SystemExit('OpenVINO is not installed: pip install "binexport[openvino]"')
    cpu = cpu_info()
    name, flags = cpu.name, cpu.int8_flags
    print(
        f"{datetime.date.today()}, {platform.platform()}, {name} ({', '.join(flags)}), binexport "
        f"{binexport.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if a.files is None and not CKPT.is_file():
            raise SystemExit(f"real material absent: {CKPT}")
        files = a.files or export(Path(tmp))
        for batch in (int(b) for b in a.batches.split(",")):
            for precision in ("f32", "bf16") if a.bf16 else ("f32",):
                table(files, batch, a.seconds, a.threads, precision)


if __name__ == "__main__":
    main()
