"""safetensors beside .bwn, the packed checkpoint and a bare torch.load: file sizes, write and read times.

    python benchmarks/bench_safetensors.py [CHECKPOINT] [--repeat N]
    (default: ../shared/realdata/seed-checkpoint/wrn20-10-1bit-packed.pth.tar)

Every candidate runs in this one process, interleaved round by round (so the machine's load falls on all
alike); the table gives the median of ``--repeat`` rounds and the ratio to the bare ``torch.load`` of the
packed file (``weights_only=True``, no model built). Reads are from the page cache. Prints markdown for
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import binexport as api
from binexport import formats

DEFAULT = Path(__file__).resolve().parents[2] / "shared/realdata/seed-checkpoint/wrn20-10-1bit-packed.pth.tar"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    import numpy as np
    import torch
    from safetensors.numpy import load_file, save

    model = api.load(args.checkpoint)
    tmp = Path(tempfile.mkdtemp())
    files = {name: tmp / f"model{formats.get(name).default_suffix}" for name in ("packed", "bwn", "safetensors")}
    for name, p in files.items():
        p.write_bytes(formats.get(name).write(model))  # type: ignore[misc]
    plain = {k: np.ascontiguousarray(v) for k, v in load_file(str(files["safetensors"])).items()}
    writes: dict[str, Callable[[], object]] = {
        "packed (torch.save)": lambda: formats.get("packed").write(model),  # type: ignore[misc]
        "bwn": lambda: formats.get("bwn").write(model),  # type: ignore[misc]
        "safetensors (binexport)": lambda: formats.get("safetensors").write(model),  # type: ignore[misc]
        "safetensors (package save, same arrays)": lambda: save(plain),
    }
    reads: dict[str, Callable[[], object]] = {
        "torch.load packed (bare, no model)": lambda: torch.load(files["packed"], weights_only=True),
        "binexport load packed": lambda: api.load(files["packed"]),
        "binexport load bwn": lambda: api.load(files["bwn"]),
        "binexport load safetensors": lambda: api.load(files["safetensors"]),
        "safetensors.numpy.load_file (no model)": lambda: load_file(str(files["safetensors"])),
    }
    times: dict[str, list[float]] = {k: [] for k in [*writes, *reads]}
    for _ in range(args.repeat):
        for k, fn in [*writes.items(), *reads.items()]:
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{model.arch.name}, {model.arch.num_classes} classes; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; median of {args.repeat} interleaved rounds\n"
    )
    print("| file | bytes |\n| --- | ---: |")
    for name, p in files.items():
        print(f"| {name} | {p.stat().st_size:,} |")
    base = med["torch.load packed (bare, no model)"]
    print("\n| operation | ms | vs bare torch.load |\n| --- | ---: | ---: |")
    for k in [*writes, *reads]:
        print(f"| {k} | {med[k] * 1e3:.1f} | {med[k] / base:.2f}x |")


if __name__ == "__main__":
    main()
