"""McDonnell's own models: each `.mat` through `.bwn` and ONNX, verified on the real partial test sets.

For each of the four published files (``../shared/realdata/mcdonnell-1-bit-per-weight``): inspect, pack to
``.bwn``, export ONNX in the asked modes (int8 calibrated on the partial *training* file of its dataset), then
``binexport.verify`` every artifact against the `.mat` on the first 500 test images. Prints the markdown table
of docs/BENCHMARKS.md ("McDonnell's own models").

Usage: python benchmarks/bench_mat.py [--models matlab-c10,keras-c100] [--modes 1-bit,float32,float16,int8]
       [--limit 500]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import binexport

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
MCD = REAL / "mcdonnell-1-bit-per-weight" / "TrainedModels"
MODELS = {
    "matlab-c10": (MCD / "Matlab" / "TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat", "CIFAR10"),
    "matlab-c100": (MCD / "Matlab" / "TrainedWideResNet20-10_CIFAR100_1-bit-per-weight-4MB.mat", "CIFAR100"),
    "keras-c10": (MCD / "Tensorflow.keras" / "CIFAR10_allparams.mat", "CIFAR10"),
    "keras-c100": (MCD / "Tensorflow.keras" / "CIFAR100_allparams.mat", "CIFAR100"),
}
ROOTS = {"CIFAR10": REAL / "cifar10-partial", "CIFAR100": REAL / "cifar100-partial"}


def run(name: str, modes: list[str], limit: int, tmp: Path) -> None:
    mat, dataset = MODELS[name]
    root = ROOTS[dataset]
    arts = [binexport.pack(mat, tmp / f"{name}.bwn", format="bwn", force=True).output]
    for mode in modes:
        opts = {"calibrate": dataset, "data_root": root} if mode == "int8" else {}
        arts.append(binexport.export_onnx(mat, tmp / f"{name}-{mode}.onnx", weights=mode, force=True, **opts).output)
    r = binexport.verify(arts, reference=mat, dataset=dataset, data_root=root, limit=limit, device="cpu")
    print(
        f"| {name} | `.mat` (reference) | {mat.stat().st_size:,} | {100 * r.reference.top1:.1f} | "
        f"{100 * r.reference.top5:.1f} | | | ref |"
    )
    for row in r.artifacts:
        d = "n/a" if row.max_abs_logit_diff is None else f"{row.max_abs_logit_diff:.1e}"
        print(
            f"| | {Path(row.path).name} ({row.weights}) | {Path(row.path).stat().st_size:,} | {100 * row.top1:.1f} | "
            f"{100 * row.top5:.1f} | {100 * row.agreement:.1f} | {d} | {'PASS' if row.passed else 'FAIL'} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--modes", default="1-bit,float32,float16,int8")
    ap.add_argument("--limit", type=int, default=500)
    a = ap.parse_args()
    if not MCD.is_dir():
        raise SystemExit(f"real material absent: {MCD}")
    print("| model | artifact | size (B) | top-1 % | top-5 % | agreement % | max \\|Δ logit\\| | result |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            run(name, [m for m in a.modes.split(",") if m], a.limit, Path(tmp))


if __name__ == "__main__":
    main()
