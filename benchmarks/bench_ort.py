"""The .ort phone file: its size under every converter optimisation level and style, beside binexport's choice.

    python benchmarks/bench_ort.py ONNX_FILE

Runs ONNX Runtime's own converter (``python -m onnxruntime.tools.convert_onnx_models_to_ort``) at each level
(``ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL``) and style, then binexport's ``formats.ort.convert``, and
prints a markdown table of the sizes against the ONNX file's (sizes only: no timings). Used for docs/phones.md
and docs/BENCHMARKS.md: the converter's levels fold the in-graph 1-bit unpack (27 MB for WRN-20-10).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from binexport.formats import ort as ort_fmt


def main() -> None:
    src = Path(sys.argv[1])
    n = src.stat().st_size
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for style in ("Fixed", "Runtime"):
            for level in ("disable", "basic", "extended", "all"):
                out = Path(d) / f"{style}-{level}"
                out.mkdir()
                shutil.copy(src, out / "m.onnx")
                env = {**os.environ, "ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL": level}
                cmd = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(out / "m.onnx")]
                cmd += ["--optimization_style", style, "--enable_type_reduction"]
                subprocess.run(cmd, env=env, capture_output=True, check=True, timeout=600)
                size = sum(p.stat().st_size for p in out.glob("*.ort"))
                rows.append((f"converter {style}, {level}", size))
    data, _ = ort_fmt.convert(src)
    rows.append((f"binexport ({ort_fmt.STYLE})", len(data)))
    print(f"| {src.name} ({n:,} B) | .ort bytes | of the ONNX |\n| --- | ---: | ---: |")
    for name, size in rows:
        print(f"| {name} | {size:,} | {100 * size / n:.1f} % |")


if __name__ == "__main__":
    main()
