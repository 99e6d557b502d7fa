"""Full-precision .bwn on a WRN-20-10: sizes against raw float32 and general compressors, decode time, agreement.

Writes the full-precision (He-init: no trained full-precision checkpoint is at hand) 204.5 MiB training
checkpoint of binexport.data.synth, packs it to .bwn float32 / float16 / bfloat16 and ONNX float32, compares
the float32 .bwn with raw, bz2 -9 (run here) and xz -9 / zstd -19 (run here with --slow; else the numbers
measured on the same tensor bytes in /work/research/f32codec/FINDINGS.md), times the whole-model decode
(best of 5, CPU and wall), and verifies every artifact on CIFAR-100 test images. Prints a markdown section
for docs/BENCHMARKS.md.

    python benchmarks/bench_bwn_float.py [--data-root DIR] [--limit 500] [--slow] [--out DIR]
"""

from __future__ import annotations

import argparse
import bz2
import os
import platform
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import numpy as np

import binexport
from binexport.data.synth import make_arch, write_training_run
from binexport.formats import bwn

RESEARCH = {"xz -9": 97_368_552, "zstd -19": 99_294_696}  # FINDINGS.md, same 107,235,520 tensor bytes


def _cli(cmd: list[str], data: bytes) -> int | None:
    if shutil.which(cmd[0]) is None:
        return None
    return len(subprocess.run(cmd, input=data, capture_output=True, check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default="/work/shared/realdata/cifar100-partial")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--slow", action="store_true", help="also run xz -9 and zstd -19 (minutes)")
    ap.add_argument("--out", default="/tmp/bench_bwn_float")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = write_training_run(out / "run", make_arch(20, 10, 100), binarize=False)
    lines = [
        "## Full-precision `.bwn` (WRN-20-10, He-init weights)",
        "",
        f"{date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"numpy {np.__version__}; `python benchmarks/bench_bwn_float.py`. The checkpoint is binexport's "
        "synthetic full-precision training checkpoint (He-init weights: no trained full-precision "
        f"WRN-20-10 is at hand), {ckpt.stat().st_size:,} B.",
        "",
    ]
    model = binexport.load(ckpt)
    raw = b"".join(
        np.ascontiguousarray(model.floats[s.name]).tobytes()
        for s in model.arch.specs()
        if model.floats[s.name].dtype == np.float32
    )
    reports = {}
    for w in ("float32", "float16", "bfloat16"):
        reports[w] = binexport.pack(ckpt, out / f"fp-{w}.bwn", format="bwn", weights=w, force=True)
    sizes = [("raw float32 tensor bytes", len(raw), "exact")]
    t = time.perf_counter()
    sizes.append(("bz2 -9 (Python bz2)", len(bz2.compress(raw, 9)), f"exact; {time.perf_counter() - t:.0f} s"))
    for name, cmd in (("xz -9", ["xz", "-9", "-c", "-T1"]), ("zstd -19", ["zstd", "-19", "-c", "-T1"])):
        n = _cli(cmd, raw) if a.slow else None
        sizes.append((name, n or RESEARCH[name], "exact" + ("" if n else "; measured in FINDINGS.md, same bytes")))
    for w in ("float32", "float16", "bfloat16"):
        sizes.append(
            (
                f"**.bwn {w}** (whole file)",
                reports[w].output_bytes,
                "bit-exact" if w == "float32" else f"lossy: convs rounded to {w}",
            )
        )
    lines += ["| what | bytes | MB | vs raw | |", "| --- | ---: | ---: | ---: | --- |"]
    lines += [f"| {n} | {b:,} | {b / 1e6:.1f} | {b / len(raw):.1%} | {note} |" for n, b, note in sizes]
    lines.append("")
    from binexport.formats.bwn import container as box

    encs: dict[str, int] = {}
    for e in box.Container.open(out / "fp-float32.bwn").entries:
        encs[e.encoding] = encs.get(e.encoding, 0) + 1
    lines.append(
        "Encodings chosen in the float32 file (tensors): " + ", ".join(f"{k} {v}" for k, v in encs.items()) + "."
    )
    lines.append("")
    lines += ["| decode (bwn.read, CRCs checked, best of 5) | CPU s | wall s |", "| --- | ---: | ---: |"]
    for w in ("float32", "float16", "bfloat16"):
        best = (9e9, 9e9)
        for _ in range(5):
            c0, t0 = time.process_time(), time.perf_counter()
            bwn.read(out / f"fp-{w}.bwn")
            best = min(best, (time.process_time() - c0, time.perf_counter() - t0))
        lines.append(f"| .bwn {w} | {best[0]:.2f} | {best[1]:.2f} |")
    lines.append("")
    onnx = binexport.export_onnx(ckpt, out / "fp.onnx", weights="float32", force=True).output
    arts = [out / f"fp-{w}.bwn" for w in ("float32", "float16", "bfloat16")] + [Path(onnx)]
    rep = binexport.verify(arts, dataset="CIFAR100", data_root=a.data_root, reference=ckpt, limit=a.limit, device="cpu")
    lines += [
        f"Agreement with the checkpoint on {rep.num_images} real CIFAR-100 test images ({a.data_root}):",
        "",
        "| artifact | weights | agreement | max abs logit diff | mean | limit | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    from binexport.check import tolerance

    for r in rep.artifacts:
        tol = tolerance(r.weights)
        lines.append(
            f"| {Path(r.path).name} | {r.weights} | {r.agreement:.1%} | {r.max_abs_logit_diff:.3g} | "
            f"{r.mean_abs_logit_diff:.3g} | {tol.max_abs_logit_diff:g}, {tol.min_agreement:.0%} | "
            f"{'FAIL' if r.problems else 'pass'} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
