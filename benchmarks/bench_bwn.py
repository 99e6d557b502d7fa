"""The .bwn codecs side by side on one checkpoint: sizes and decode times, and the whole file.

    python benchmarks/bench_bwn.py [CHECKPOINT]   (default: ../shared/realdata/seed-checkpoint/...)

Every alternative runs in this one process on the same tensors; times are the
best of ``--repeat`` runs (wall clock, this machine's load included). Prints
markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import bz2
import lzma
import os
import platform
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

import binexport as api
from binexport.formats import bwn
from binexport.formats.bwn import codec, rans

DEFAULT = Path(__file__).resolve().parents[2] / "shared/realdata/seed-checkpoint/wrn20-10-1bit-packed.pth.tar"
_LZMA_RAW = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 0, "lp": 0, "pb": 0}]


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def entropy_bytes(sym: np.ndarray) -> float:
    c = np.bincount(sym.ravel())
    c = c[c > 0]
    return float(-(c * np.log2(c / c.sum())).sum() / 8)


def rank_planes(signs: np.ndarray) -> tuple[bytes, bytes]:
    """The issue's baseline: per-layer ranks of the 9-bit patterns by frequency, split into byte planes."""
    sym = codec.kernel_symbols(signs).ravel()
    order = np.argsort(-np.bincount(sym, minlength=512), kind="stable")
    rank = np.empty(512, np.int64)
    rank[order] = np.arange(512)
    r = rank[sym]
    return (r & 255).astype(np.uint8).tobytes(), np.packbits(r >> 8).tobytes()


def bit_codecs(layers: dict[str, np.ndarray], repeat: int) -> list[tuple[str, int, float, str]]:
    """(name, total bytes, decode seconds for all layers, note) for each way of storing the sign bits."""
    rows = []
    packed = {k: codec.encode_packed(v) for k, v in layers.items()}
    rows.append(
        (
            "packed bits (`packed`)",
            sum(map(len, packed.values())),
            best_time(lambda: [np.unpackbits(np.frombuffer(p, np.uint8)) for p in packed.values()], repeat),
            "memory-mappable",
        )
    )
    for name, comp, dec in (
        ("zlib -9 of packed bits", lambda b: zlib.compress(b, 9), zlib.decompress),
        ("bz2 -9 of packed bits", lambda b: bz2.compress(b, 9), bz2.decompress),
        ("xz -9e of packed bits", lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    ):
        blobs = [comp(p) for p in packed.values()]
        rows.append(
            (
                name,
                sum(map(len, blobs)),
                best_time(lambda dec=dec, blobs=blobs: [dec(b) for b in blobs], repeat),
                "stdlib",
            )
        )
    planes = [rank_planes(v) for v in layers.values()]
    blobs = [
        (
            lzma.compress(lo, format=lzma.FORMAT_RAW, filters=_LZMA_RAW),
            lzma.compress(hi, format=lzma.FORMAT_RAW, filters=_LZMA_RAW),
        )
        for lo, hi in planes
    ]
    rows.append(
        (
            "rank + LZMA (byte planes, lc=0)",
            sum(len(a) + len(b) for a, b in blobs),
            best_time(
                lambda: [
                    (
                        lzma.decompress(a, lzma.FORMAT_RAW, filters=_LZMA_RAW),
                        lzma.decompress(b, lzma.FORMAT_RAW, filters=_LZMA_RAW),
                    )
                    for a, b in blobs
                ],
                repeat,
            ),
            "ranks only; patterns need the rank table too",
        )
    )
    for name, refs in (
        ("`rans`: kernel patterns, order 0", False),
        ("`rans-ref`: ranked against a parent kernel", True),
    ):
        t = time.perf_counter()
        payloads = {k: codec.encode_kernels(v, refs) for k, v in layers.items()}
        enc = time.perf_counter() - t

        def decode(refs: bool = refs, payloads: dict[str, bytes] = payloads) -> None:
            pend = [
                codec.parse_kernels(np.frombuffer(p, np.uint8), layers[k].shape, refs, k) for k, p in payloads.items()
            ]
            rans.decode_jobs([j for q in pend for j in q.jobs])
            outs = [q.finish() for q in pend]
            assert all(np.array_equal(o, layers[k]) for o, k in zip(outs, payloads, strict=True))

        rows.append((name, sum(map(len, payloads.values())), best_time(decode, repeat), f"encode {enc:.1f} s"))
    sym = {k: codec.kernel_symbols(v) for k, v in layers.items()}
    rows.append(
        (
            "bound: order-0 entropy of the patterns",
            int(sum(entropy_bytes(s) for s in sym.values())),
            0.0,
            "no tables, no state",
        )
    )
    return rows


def float_codecs(floats: dict[str, np.ndarray], repeat: int) -> list[tuple[str, int, float, str]]:
    f32 = {k: v for k, v in floats.items() if v.dtype == np.float32}
    raw = sum(v.nbytes for v in floats.values())
    shuffled = [np.frombuffer(v.tobytes(), np.uint8).reshape(-1, 4).T.tobytes() for v in f32.values()]
    xz = [lzma.compress(s, preset=9) for s in shuffled]
    coded = {k: codec.encode_f32(v) for k, v in f32.items()}
    best = raw - sum(v.nbytes for v in f32.values()) + sum(min(len(coded[k]), v.nbytes) for k, v in f32.items())

    def decode() -> None:
        pend = [codec.parse_f32(np.frombuffer(p, np.uint8), f32[k].shape, k) for k, p in coded.items()]
        rans.decode_jobs([j for q in pend for j in q.jobs])
        [q.finish() for q in pend]

    return [
        ("raw", raw, 0.0, "memory-mappable"),
        (
            "xz -9 of byte-shuffled float32",
            raw - sum(v.nbytes for v in f32.values()) + sum(map(len, xz)),
            best_time(lambda: [lzma.decompress(b) for b in xz], repeat),
            "stdlib",
        ),
        ("`f32-rans` where smaller, else raw", best, best_time(decode, repeat), "what .bwn writes"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    model = api.load(args.checkpoint)
    src = args.checkpoint.stat().st_size
    print(
        f"{args.checkpoint.name}: {model.arch.name}, {model.arch.num_classes} classes, {src:,} B; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}\n"
    )
    layers = {k: b.signs for k, b in model.binary.items()}
    print("| 1-bit tensors, 18 layers | bytes | vs packed | decode all |  |\n| --- | ---: | ---: | ---: | --- |")
    rows = bit_codecs(layers, args.repeat)
    base = rows[0][1]
    for name, n, t, note in rows:
        print(f"| {name} | {n:,} | {n / base:.3f} | {t * 1000:.0f} ms | {note} |")
    print("\n| float tensors | bytes | decode |  |\n| --- | ---: | ---: | --- |")
    for name, n, t, note in float_codecs(model.floats, args.repeat):
        print(f"| {name} | {n:,} | {t * 1000:.0f} ms | {note} |")
    print(f"\n| whole file | bytes | vs published | read (best of {args.repeat}) |\n| --- | ---: | ---: | ---: |")
    print(
        f"| published packed checkpoint (torch.load) | {src:,} | 1.000 | "
        f"{best_time(lambda: api.load(args.checkpoint), args.repeat) * 1000:.0f} ms |"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for enc in ("packed", "best"):
            out = Path(tmp) / f"{enc}.bwn"
            t = time.perf_counter()
            out.write_bytes(bwn.write(model, encoding=enc))
            wt = time.perf_counter() - t
            n = out.stat().st_size
            read = best_time(lambda out=out: bwn.read(out), args.repeat)
            nover = best_time(lambda out=out: bwn.read(out, verify_checksums=False), args.repeat)
            assert model.compare(bwn.read(out)) == []
            print(
                f"| `.bwn --encoding {enc}` (write {wt:.1f} s) | {n:,} | {n / src:.3f} | {read * 1000:.0f} ms "
                f"({nover * 1000:.0f} ms without CRCs) |"
            )


if __name__ == "__main__":
    main()
