"""Peak memory of ``verify --images`` against the number of images, and what sizing an ONNX graph costs.

    python benchmarks/bench_bounds.py [--counts 400,4000,40000] [--before PATH]
    python benchmarks/bench_bounds.py --round3 [--before PATH]

Each count gets a folder of 82-byte valid 32x32 PNGs (all black) in a temporary folder and one
``binexport verify CKPT ONNX --images DIR`` in a fresh process (a synthetic WRN-8-1 checkpoint and its
1-bit ONNX export); its peak RSS is the child's own ``ru_maxrss`` (``os.wait4``). ``--before PATH`` runs the same with ``PYTHONPATH=PATH`` (an older checkout's root) side by side, the
two interleaved per count so load from elsewhere hits both alike. Then ``check_onnx_bounds`` is timed on the
real WRN-20-10 in every weight encoding. Prints markdown for docs/BENCHMARKS.md.

``--round3`` instead runs ``verify`` / ``bench`` on the round-3 hostile ONNX graphs (tests/hostile/test_hostile_onnx_round3.py:
ConvTranspose, Attention, 100,000 nodes, a scalar output, a padded graph), each in a fresh process, and prints
exit code, stderr lines and peak RSS (the graphs are written by a separate process, so the parent stays small:
a child's ``ru_maxrss`` starts at its parent's RSS when forked).
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
    ap.add_argument("--round3", action="store_true", help="the round-3 hostile ONNX graphs instead")
    args = ap.parse_args()
    if args.round3:
        round3(args.before)
        return
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


#: The round-3 test module (tests/hostile/), whose cases and graph builder this benchmark measures; it imports
#: tests/support, so both folders go on the path.
_ROUND3_PATHS = [str(ROOT / "tests"), str(ROOT / "tests" / "hostile")]
_WRITE_GRAPHS = """
import sys
from pathlib import Path
sys.path[:0] = sys.argv[1].split("|")
from test_hostile_onnx_round3 import graph
for kind in sys.argv[3:]:
    (Path(sys.argv[2]) / f"{kind}.onnx").write_bytes(graph(kind))
"""


def _run(cmd: list[str], pythonpath: str) -> tuple[int, int, str]:
    """(peak RSS bytes, exit code, stderr) of one child process."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    # cwd is the side's root: ``python -m`` puts the working folder first on sys.path, before PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, cwd=pythonpath, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status), err


def round3(before: str | None) -> None:
    """verify / bench on each round-3 hostile graph: exit code, stderr lines, peak RSS; after and before."""
    sys.path[:0] = _ROUND3_PATHS
    from support.hostile import png
    from test_hostile_onnx_round3 import CLI_CASES as ROUND3

    sides = [("after", str(ROOT))] + ([("before", before)] if before else [])
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        kinds = sorted({k for k, _, _ in ROUND3})
        paths = "|".join(_ROUND3_PATHS)
        subprocess.run([sys.executable, "-c", _WRITE_GRAPHS, paths, tmp, *kinds], check=True)
        setup = (
            "from binexport.data.synth import make_arch, write_training_run as w; import sys; from pathlib import Path"
        )
        setup += "; w(Path(sys.argv[1]), make_arch(8, 1, 10), binarize=True)"
        subprocess.run([sys.executable, "-c", setup, str(t / "run")], check=True)
        ckpt = next((t / "run").glob("*.pth*"))
        imgs = t / "imgs"
        imgs.mkdir()
        for i in range(2):
            (imgs / f"i{i}_{i}.png").write_bytes(png())
        print(
            "| graph | command | code | exit | stderr lines | peak RSS (MiB) |\n| --- | --- | --- | ---: | ---: | ---: |"
        )
        for kind, verb, rt in ROUND3:
            g = t / f"{kind}.onnx"
            args = (
                ["verify", str(g), "--reference", str(ckpt), "--images", str(imgs)]
                if verb == "verify"
                else ["bench", str(g), "--seconds", "0.1"]
            )
            for side, path in sides:
                cmd = [sys.executable, "-m", "binexport.cli", *args, "--device", "cpu", "--runtime", rt]
                peak, code, err = _run(cmd, path)
                lines = len(err.strip().splitlines())
                print(f"| {kind} | {verb} --runtime {rt} | {side} | {code} | {lines} | {peak / 2**20:,.0f} |")
                print(
                    f"{side} {kind} {verb} {rt}: {err.strip().splitlines()[-1][:160] if lines else ''}", file=sys.stderr
                )


if __name__ == "__main__":
    main()
