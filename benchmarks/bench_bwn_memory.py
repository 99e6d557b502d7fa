"""Peak memory of reading a `.bwn` against its file size and decoded-size limit (FORMAT.md section 10.5).

The worst legal files for memory are full-precision bfloat16 models of near-constant weights: the format
lets `planes` hold 32 bf16 values per payload byte, and a model reader returns each as a float32. This
crafts such files (a WRN-20-w, every conv weight 0 except one in `SPARSITY` = 20, which is 1/16: 26 values per payload byte), reads
each in a fresh subprocess (`binexport.load`) and reports the process's peak RSS (VmHWM), the file size,
the decoded size D as counted, and the decode time, interleaved over repeats.

    PYTHONPATH=$PWD python benchmarks/bench_bwn_memory.py --widths 16 22 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SPARSITY = 20


def craft(path: Path, width: int, seed: int = 0, depth: int = 20) -> int:
    """Write a legal full-precision bfloat16 WRN-depth-width of near-constant conv weights; its size in bytes."""
    from binexport.data.synth import random_state
    from binexport.formats import bwn
    from binexport.model import Arch, Model

    arch = Arch(depth=depth, widths=(16 * width, 32 * width, 64 * width), num_classes=100)
    state = random_state(arch, seed) if width <= 4 else _cheap_state(arch, seed)
    rng = np.random.default_rng(seed)
    for name, kind in arch.kinds.items():
        if kind in ("binary", "conv") or name in ("conv0", "conv_last"):
            state[name] = np.where(
                rng.random(state[name].shape, dtype=np.float32) < 1 / SPARSITY, np.float32(1 / 16), np.float32(0)
            )
    data = bwn.write(Model(arch, False, state), weights="bfloat16")
    path.write_bytes(data)
    return len(data)


def _cheap_state(arch, seed: int) -> dict[str, np.ndarray]:
    """BN statistics as random_state makes them, without drawing normal conv weights that craft replaces."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in arch.specs():
        n = spec.name
        if n.endswith("num_batches_tracked"):
            out[n] = np.array(1, dtype=np.int64)
        elif n.endswith("running_var") or n == "bn_last.weight":
            out[n] = rng.uniform(0.5, 2.0, spec.shape).astype(np.float32)
        else:
            out[n] = np.zeros(spec.shape, dtype=np.float32)
    return out


_CHILD = """
import json, sys, time
from binexport.formats import bwn
from binexport.formats.bwn import container as box
t = time.perf_counter()
if sys.argv[2] == "model":  # measured past the default limit, which may refuse the file
    m = bwn.read(sys.argv[1], max_decoded_bytes=1 << 40)
    arrays = list(m.floats.values()) + [b.signs for b in m.binary.values()]
else:
    arrays = list(bwn.read_tensors(sys.argv[1], max_decoded_bytes=1 << 40).values())
dt = time.perf_counter() - t
c = box.Container.open(sys.argv[1], max_decoded_bytes=1 << 40)
counted = sum(e.decoded_bytes for e in c.entries)
returned = sum(a.nbytes for a in arrays)
hwm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({"seconds": dt, "peak_rss": hwm, "counted": counted, "returned": returned}))
"""

_BASE = "import json; hwm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))"


def _env(tree: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": tree}


def measure(path: Path, tree: str, how: str = "model") -> dict[str, float]:
    """Peak RSS and read time of a fresh interpreter that reads ``path`` (``how``: as a model or as tensors)
    with the binexport of ``tree``."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), how],
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
        env=_env(tree),
    )  # cwd too: `python -c` puts the working directory first
    return json.loads(out.stdout)


def baseline(tree: str) -> int:
    """Peak RSS of a fresh interpreter that only imports the reader."""
    code = "from binexport.formats import bwn\n" + _BASE + "\nprint(hwm)"
    return int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree, env=_env(tree)
        ).stdout
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 22])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--hostile",
        action="store_true",
        help="instead: the worst legal files for a decoder's memory (tests/support/bwn_crafted.py), this tree",
    )
    ap.add_argument(
        "--speed",
        action="store_true",
        help="instead: read time of ordinary WRN-20-10 files (real 1-bit, float32, bfloat16) per tree",
    )
    ap.add_argument(
        "--trees",
        nargs="+",
        default=[os.getcwd()],
        help="binexport source trees to compare (e.g. a checkout of the previous commit and this one)",
    )
    args = ap.parse_args()
    if args.hostile:
        hostile(args.repeats)
        return
    if args.speed:
        speed(args.trees, args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for w in args.widths:
            p = Path(tmp) / f"wrn-20-{w}-bf16.bwn"
            files[w] = (p, craft(p, w))
        base = baseline(args.trees[-1])
        rows: dict[tuple[str, int], list[dict]] = {(t, w): [] for t in args.trees for w in args.widths}
        for _ in range(args.repeats):  # interleaved: load from other jobs hits every tree alike
            for w in args.widths:
                for t in args.trees:
                    rows[t, w].append(measure(files[w][0], t))
        print(f"import baseline peak RSS {base / 1e6:.0f} MB")
        for t, w in rows:
            r = rows[t, w]
            size = files[w][1]
            print(f"[{t}]", end=" ")
            peak = max(x["peak_rss"] for x in r)
            sec = sorted(x["seconds"] for x in r)[len(r) // 2]
            limit = min(4 << 30, max(1 << 28, 64 * size))
            print(
                f"WRN-20-{w} bf16: file {size / 1e6:.2f} MB, counted D {r[0]['counted'] / 1e6:.0f} MB, returned "
                f"{r[0]['returned'] / 1e6:.0f} MB, default limit {limit / 1e6:.0f} MB ({'refused' if r[0]['counted'] > limit else 'read'} by default), peak RSS {peak / 1e6:.0f} MB "
                f"({(peak - base) / 1e6:.0f} MB over import; {(peak - base) / max(r[0]['counted'], 1):.2f} x D), "
                f"read {sec:.2f} s (median of {len(r)})"
            )


def speed(trees: list[str], repeats: int) -> None:
    """Read time and peak of ordinary files under each tree, interleaved: the real 1-bit WRN-20-10 (the
    seed checkpoint in ``../shared/realdata``, packed 'best') and a synthetic WRN-20-10 in float32 and
    bfloat16 (He-init weights: what trained weights look like to the coder)."""
    from binexport.data.synth import make_arch, random_state
    from binexport.formats import bwn, load
    from binexport.model import Model

    real = Path(__file__).resolve().parents[1] / "../shared/realdata/seed-checkpoint/wrn20-10-1bit-packed.pth.tar"
    fp = Model(make_arch(20, 10, 100), False, random_state(make_arch(20, 10, 100), 0))
    makers = {
        "WRN-20-10 float32 (synthetic)": lambda: bwn.write(fp),
        "WRN-20-10 bfloat16 (synthetic)": lambda: bwn.write(fp, weights="bfloat16"),
    }
    if real.exists():
        makers = {"WRN-20-10 1-bit (real seed checkpoint)": lambda: bwn.write(load(real)), **makers}
    else:
        print(f"(skipping the real 1-bit file: {real} is absent)")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for k, (label, make) in enumerate(makers.items()):
            files[label] = Path(tmp) / f"{k}.bwn"
            files[label].write_bytes(make())
        rows: dict[tuple[str, str], list[dict]] = {(t, f): [] for t in trees for f in files}
        for _ in range(repeats):
            for f in files:
                for t in trees:
                    rows[t, f].append(measure(files[f], t))
        for (t, f), r in rows.items():
            sec = sorted(x["seconds"] for x in r)[len(r) // 2]
            print(
                f"[{t}] {f}: file {files[f].stat().st_size / 1e6:.2f} MB, read {sec:.3f} s (median of {len(r)}), "
                f"peak RSS {max(x['peak_rss'] for x in r) / 1e6:.0f} MB"
            )


def hostile(repeats: int) -> None:
    """Peak RSS over the import baseline against D and the file size, for the worst shapes the format allows."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support import bwn_crafted as crafted  # the test suite's crafted files: the same shapes the memory test reads

    shapes = {
        "1-bit constant kernels, WRN-20-8 (256 weights a byte)": (lambda: crafted.constant_model_file(20, 8), "model"),
        "bf16 planes of constant convs, WRN-20-12 (120 values a lane)": (
            lambda: crafted.constant_bf16_model_file(20, 12),
            "model",
        ),
        "rans, one lane per kernel (4M kernels)": (lambda: crafted.one_lane_per_kernel(1 << 22), "tensors"),
        "bf16 planes, one lane per value (4M values)": (lambda: crafted.one_lane_per_value(1 << 22), "tensors"),
    }
    tree = os.getcwd()
    base = baseline(tree)
    with tempfile.TemporaryDirectory() as tmp:
        for label, (make, how) in shapes.items():
            p = Path(tmp) / "h.bwn"
            p.write_bytes(make())
            r = [measure(p, tree, how) for _ in range(repeats)]
            over = max(x["peak_rss"] for x in r) - base
            size, d = p.stat().st_size, r[0]["counted"]
            print(
                f"{label}: file {size / 1e6:.1f} MB, D {d / 1e6:.0f} MB, peak over import {over / 1e6:.0f} MB "
                f"= {over / d:.2f} x D = {over / size:.1f} x file"
            )


if __name__ == "__main__":
    main()
