"""Peak memory of ``verify --images`` against the number of images, and what sizing an ONNX graph costs.

    python benchmarks/bench_bounds.py [--counts 400,4000,40000] [--before PATH]

Each count gets a folder of 82-byte valid 32x32 PNGs (all black) in a temporary folder and one
``binexport verify CKPT ONNX --images DIR`` in a fresh process (a synthetic WRN-8-1 checkpoint and its
1-bit ONNX export); its peak RSS is the child's own ``ru_maxrss`` (``os.wait4``). ``--before PATH`` runs the same with ``PYTHONPATH=PATH`` (an older checkout's root) side by side, the
two interleaved per count so load from elsewhere hits both alike. Then ``check_onnx_bounds`` is timed on the
real WRN-20-10 in every weight encoding. Prints markdown for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "realdata" / "seed-checkpoint" / "wrn20-10-1bit-packed.pth.tar"


def _peak_of(cmd: list[str], pythonpath: str) -> tuple[int, float, int]:
    """(peak RSS bytes, seconds, exit code) of one child process: its own rusage, from wait4."""
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": pythonpath}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="400,4000,40000")
    ap.add_argument("--before", default=None, help="root of an older checkout to compare with")
    args = ap.parse_args()
    from binexport import formats
    from binexport.data.synth import make_arch, write_training_run

    sys.path.insert(0, str(ROOT / "tests"))
    from support.hostile import png

    sides = [("after", str(ROOT))] + ([("before", args.before)] if args.before else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ckpt = write_training_run(t / "run", make_arch(8, 1, 10), binarize=True)
        onnx = t / "m.onnx"
        onnx.write_bytes(formats.get("onnx").write(formats.load(ckpt)))
        one = png()
        for n in sorted(int(c) for c in args.counts.split(",")):
            d = t / f"imgs{n}"
            d.mkdir()
            for i in range(n):
                (d / f"i{i:05d}_{i % 10}.png").write_bytes(one)
            for side, path in sides:
                cmd = [sys.executable, "-m", "binexport.cli", "verify", str(ckpt), str(onnx), "--images", str(d)]
                peak, secs, code = _peak_of(cmd, path)
                rows.append((side, n, n * len(one), peak, secs, code))
                print(f"{side} {n} images: peak {peak / 2**20:,.0f} MiB, {secs:.0f} s, exit {code}", file=sys.stderr)
    print("| code | images | PNG bytes | peak RSS (MiB) | exit |\n| --- | ---: | ---: | ---: | ---: |")
    for side, n, size, peak, _, code in rows:
        print(f"| {side} | {n:,} | {size:,} | {peak / 2**20:,.0f} | {code} |")
    if REAL.is_file():
        from binexport.formats.onnx import build_model
        from binexport.formats.onnx.bounds import check_onnx_bounds
        from binexport.formats.onnx.int8 import required_ranges

        model = formats.load(REAL)
        print(
            "\n| WRN-20-10 graph | file (MiB) | check (s) | largest activation / image | all activations / image "
            "| all constants / file |\n| --- | ---: | ---: | ---: | ---: | ---: |"
        )
        for w in ("float32", "float16", "1-bit", "int8"):
            ranges = {k: (-3.0, 3.0) for k in required_ranges(model)} if w == "int8" else None
            data = build_model(model, w, int8_ranges=ranges).SerializeToString()
            t0 = time.perf_counter()
            b = check_onnx_bounds(data)
            secs = time.perf_counter() - t0
            print(
                f"| {w} | {len(data) / 2**20:.1f} | {secs:.2f} | {b.image_tensor_bytes >> 10} KiB | "
                f"{b.image_total_bytes / 2**20:.1f} MiB | {b.const_total_bytes / len(data):.1f}x |"
            )


if __name__ == "__main__":
    main()
