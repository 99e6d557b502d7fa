"""Rendering of the ``predict`` and ``bundle`` reports (the CLI layer: only cli/ imports rich)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from binexport.cli.render import console, mib


def render_predict(r: Any) -> None:
    """Per image: its path and size, then one line per top class: rank, name (index), probability."""
    from rich.markup import escape

    con = console()
    on = r.provider.replace("ExecutionProvider", "")
    con.print(
        f"{escape(Path(r.model).name)}: {r.weights} {r.format} on {escape(on)}, {r.num_classes} classes "
        f"({escape(r.labels)})",
        markup=False,
    )
    for im in r.images:
        con.print(f"{im.path} ({im.width}x{im.height})", markup=False)
        for i, c in enumerate(im.top, 1):
            con.print(f"  {i}. {c.label} ({c.index})  {100 * c.probability:6.2f}%", markup=False)
    for note in r.notes:
        con.print(f"note: {note}", markup=False)


def render_bundle(r: Any) -> None:
    """The files written, their sizes and what verify measured, then the upload command."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    con = console()
    t = Table(title=f"bundle {escape(r.output)}", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("file", "size", "top-1 %", "agree %"):
        t.add_column(col, justify="left" if col == "file" else "right")
    for f in r.files:
        t.add_row(
            escape(f.path),
            mib(f.bytes),
            "" if f.top1 is None else f"{100 * f.top1:.2f}",
            "" if f.agreement is None else f"{100 * f.agreement:.2f}",
        )
    con.print(t)
    for w in r.warnings:
        con.print(f"warning: {w}", markup=False)
    con.print(f"publish with: {r.upload_command}", markup=False)


def render_ort(o: Any) -> None:
    """The .ort file beside the ONNX: sizes, the operator config, the mobile usability check's lines."""
    con = console()
    con.print(
        f"wrote {o.output}: {mib(o.output_bytes)}, {100 * o.size_ratio:.1f}% of the ONNX; max |logit diff| vs "
        f"the ONNX {o.max_abs_diff_vs_onnx:.1e}; operator config {o.config}",
        markup=False,
    )
    for line in o.mobile_usability:
        con.print(f"  mobile usability: {line}", markup=False)
