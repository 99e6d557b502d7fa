"""`binexport pack` of a 204.5 MiB WRN-20-10 training checkpoint vs a bare `torch.load` of it.

Both run as fresh processes, alternating, so each pays Python and torch start-up
and the page cache is equally warm. Peak RSS comes from wait4's rusage of each
child. Usage: python benchmarks/bench_pack.py [--runs 5] [--write-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # Made in a child: Linux carries a parent's peak RSS into its children's rusage, so this
        # process must stay small for the children's figures to be their own.
        ckpt = Path(tmp) / "run" / "checkpoint.pth.tar"
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from binexport.data.synth import make_arch, write_training_run; "
                f"write_training_run({str(ckpt.parent)!r}, make_arch(20, 10, 100), binarize=True)",
            ],
            check=True,
            cwd=ROOT,
        )
        out = Path(tmp) / "packed.pth.tar"
        size = ckpt.stat().st_size
        bare = [sys.executable, "-c", f"import torch; torch.load({str(ckpt)!r}, map_location='cpu')"]
        pack = [sys.executable, "-m", "binexport.cli", "pack", str(ckpt), "-o", str(out), "--force"]
        _measure(bare), _measure(pack)  # warm the page cache and the import caches
        rows: dict[str, list[tuple[float, float]]] = {"bare": [], "pack": []}
        for _ in range(args.runs):
            rows["bare"].append(_measure(bare))
            rows["pack"].append(_measure(pack))
        out_size = out.stat().st_size
    med = {k: (statistics.median(w for w, _ in v), max(r for _, r in v)) for k, v in rows.items()}
    ratio = med["pack"][0] / med["bare"][0]
    extra = med["pack"][1] - med["bare"][1]
    table = "\n".join(
        [
            f"Input: WRN-20-10 training checkpoint, {size:,} B ({size / 2**20:.1f} MiB); output {out_size:,} B "
            f"({out_size / 2**20:.2f} MiB). {args.runs} runs each, alternating, median wall time, max peak RSS.",
            "",
            "| command | wall time (s) | peak RSS (MiB) |",
            "| --- | ---: | ---: |",
            f'| `python -c "import torch; torch.load(ckpt)"` | {med["bare"][0]:.2f} | {med["bare"][1]:.0f} |',
            f"| `binexport pack ckpt` (load, pack, write, re-read and check) | {med['pack'][0]:.2f} | "
            f"{med['pack'][1]:.0f} |",
            "",
            f"Wall time ratio pack / bare load: **{ratio:.2f}x** (target <= 1.3x). "
            f"Peak RSS difference: **{extra:+.0f} MiB** (target <= +100 MB).",
        ]
    )
    print(table)
    if args.write_docs:
        _write_docs(table)


def _write_docs(table: str) -> None:
    doc = ROOT / "docs" / "BENCHMARKS.md"
    text = doc.read_text()
    marker = "<!-- section: pack -->"
    start = text.index(marker) + len(marker)
    end = text.find("<!-- section:", start)
    from binexport.runtimes.cpu import cpu_info

    cpu = cpu_info().name
    body = (
        f"\n## pack: `binexport pack` vs a bare `torch.load`\n\n`benchmarks/bench_pack.py`, run "
        f"{time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"no GPU.\n\n{table}\n\n"
    )
    doc.write_text(text[:start] + body + (text[end:] if end != -1 else ""))


if __name__ == "__main__":
    main()
