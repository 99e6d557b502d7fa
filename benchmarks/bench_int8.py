"""int8 ONNX on the real published WRN-20-10: accuracy by calibration setting, and what it costs to deploy.

Part 1 (accuracy): activation ranges from N real CIFAR-100 *training* images
(``cifar100-partial/train``) at several percentiles and sample sizes; each int8
graph runs on ONNX Runtime over the 500 real *test* images and is compared with
the 1-bit reference (PyTorch, SPEC forward): top-1, agreement, logit error.

Part 2 (deployment): ``binexport.bench`` over the float32, 1-bit and int8 ONNX
files of the same model, int8 in both weight encodings (``--weight-zero-point``
0: codes {-1, +1}, MLAS's symmetric direct convolution; 1: codes {0, 2}, its
QGEMM, AMX where the CPU has it), side by side (and, with ``--with-torch``, the
packed checkpoint on PyTorch), each in its own process, interleaved: size,
session creation, peak RSS, batch-1 latency and throughput at batch 64 and at
batch 1, ratios to float32, and which kernels ONNX Runtime ran
(``OrtRuntime.kernels``). ``--repeats N`` runs the whole timing N times. The two
int8 encodings' logits on the real test images are compared byte for byte.

Usage: python benchmarks/bench_int8.py [--sizes 32,64,128,256,512] [--percentiles 100,99.99,99.999]
       [--seconds 30] [--repeats 2] [--batches 64,1] [--skip-accuracy] [--with-torch]
Prints markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import binexport
from binexport.data import load_test_set, normalize
from binexport.data.calibration import load_calibration
from binexport.formats.onnx import build_model
from binexport.formats.onnx.int8 import WEIGHT_ZERO_POINTS
from binexport.runtimes.cpu import cpu_info
from binexport.runtimes.ort import open_session
from binexport.runtimes.torch_ref import TorchRuntime

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
CKPT = REAL / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"
DATA = REAL / "cifar100-partial"


def accuracy(sizes: list[int], percentiles: list[float]) -> None:
    model = binexport.load(CKPT)
    test = load_test_set(dataset="CIFAR100", data_root=DATA)
    x, y = normalize(test.images), test.labels
    torch_rt = TorchRuntime(model)
    ref = torch_rt.logits(x, 64)
    ref_top1 = float((ref.argmax(1) == y).mean())
    train = load_calibration("CIFAR100", DATA, limit=max(sizes))
    print(f"\n1-bit reference (PyTorch): top-1 {100 * ref_top1:.1f} % on {len(y)} real CIFAR-100 test images\n")
    print(
        "| calibration images | percentile | int8 top-1 % | Δ top-1 (points) | agreement % | max abs logit diff "
        "| mean abs logit diff | calibration s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sizes:
        for p in percentiles:
            t0 = time.perf_counter()
            ranges = torch_rt.activation_ranges(normalize(train.images[:n]), p)
            cal_s = time.perf_counter() - t0
            s = open_session(build_model(model, weights="int8", int8_ranges=ranges).SerializeToString())
            q = s.logits(x, 64)
            top1 = float((q.argmax(1) == y).mean())
            agree = float((q.argmax(1) == ref.argmax(1)).mean())
            d = np.abs(q - ref)
            print(
                f"| {n} | {p:g} | {100 * top1:.1f} | {100 * (top1 - ref_top1):+.1f} | {100 * agree:.1f} | "
                f"{d.max():.3f} | {d.mean():.4f} | {cal_s:.1f} |",
                flush=True,
            )


def deployment(seconds: float, with_torch: bool, repeats: int = 2, batches: tuple[int, ...] = (64, 1)) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = [d / "wrn20-10-float32.onnx", d / "wrn20-10-1bit.onnx"]
        binexport.export_onnx(CKPT, files[0], weights="float32")
        binexport.export_onnx(CKPT, files[1], weights="1-bit")
        for zp in WEIGHT_ZERO_POINTS:
            files.append(d / f"wrn20-10-int8-zp{zp}.onnx")
            binexport.export_onnx(
                CKPT, files[-1], weights="int8", calibrate="CIFAR100", data_root=DATA, weight_zero_point=zp
            )
        same_logits(files[2:])
        kernels = {f.name: open_session(str(f)).kernels() for f in files}
        print("\n| file | what ONNX Runtime runs (OrtRuntime.kernels) |\n| --- | --- |")
        for name, k in kernels.items():
            print(f"| {name} | {k} |")
        if with_torch:
            files.append(CKPT)
        for rep in range(1, repeats + 1):
            for batch in batches:
                r = binexport.bench(files, batch_size=batch, seconds=seconds)
                print(
                    f"\nrun {rep} of {repeats}, batch {batch}; {r.cpu}, {r.cores} cores, flags "
                    f"{', '.join(r.cpu_flags)}; provider {r.rows[0].provider}; {seconds:g} s per artifact, "
                    "interleaved\n"
                )
                print(
                    "| file | weights | size | session / load s | peak RSS | RSS above runtime libs | batch-1 "
                    "latency ms (median / p90) | img/s at this batch | speed vs float32 | latency vs float32 "
                    "| load vs float32 | RSS vs float32 (peak / above libs) |"
                )
                print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for row in r.rows:
                    print(
                        f"| {Path(row.path).name} | {row.weights} | {row.file_bytes:,} B | {row.load_s:.2f} "
                        f"| {row.peak_rss_bytes / 2**20:,.0f} MiB | {row.model_rss_bytes / 2**20:,.0f} MiB "
                        f"| {row.latency_ms_median:.1f} / {row.latency_ms_p90:.1f} | {row.images_per_s:.1f} "
                        f"| {row.speed_ratio:.2f}x | {row.latency_ratio:.2f}x | {row.load_ratio:.2f}x "
                        f"| {row.rss_ratio:.2f}x / {row.model_rss_ratio:.2f}x |",
                        flush=True,
                    )


def same_logits(int8_files: list[Path]) -> None:
    """Both weight encodings on ONNX Runtime over the real test images: the logits must be the same bytes."""
    test = load_test_set(dataset="CIFAR100", data_root=DATA)
    x = normalize(test.images)
    out = {f.name: open_session(str(f)).logits(x, 64) for f in int8_files}
    first, *rest = out.values()
    same = all(o.tobytes() == first.tobytes() for o in rest)
    print(
        f"\nint8 encodings {', '.join(out)} on {len(x)} real test images: logits "
        f"{'bit-identical' if same else 'DIFFER'} (max |diff| {max(float(abs(o - first).max()) for o in rest):g})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="32,64,128,256,512")
    ap.add_argument("--percentiles", default="100,99.99,99.999")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-deployment", action="store_true")
    ap.add_argument("--with-torch", action="store_true")
    ap.add_argument("--repeats", type=int, default=2, help="timing runs (each interleaved over every file)")
    ap.add_argument("--batches", default="64,1", help="throughput batch sizes, one bench run each")
    a = ap.parse_args()
    if not CKPT.is_file():
        raise SystemExit(f"real material absent: {CKPT}")
    print(
        f"{datetime.date.today()}, {platform.platform()}, {cpu_info().name} ({', '.join(cpu_info().int8_flags)}), "
        f"binexport {binexport.__version__}"
    )
    if not a.skip_accuracy:
        accuracy([int(s) for s in a.sizes.split(",")], [float(p) for p in a.percentiles.split(",")])
    if not a.skip_deployment:
        deployment(a.seconds, a.with_torch, a.repeats, tuple(int(b) for b in a.batches.split(",")))


if __name__ == "__main__":
    main()
