"""Rendering of reports for the terminal: with the commands, the only code that imports rich.

Every ``render_*`` takes a report dataclass and prints it; :func:`emit` is the one place a command's report
leaves: as tables, as JSON on stdout (``--json``) and/or as a JSON file (``--json-out``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from binexport.cli.params import one_line


def emit(report: Any, render: Callable[[Any], None], as_json: bool, json_out: Path | None) -> None:
    """Show ``report``: ``render`` it, or print its JSON (``--json``); and write the JSON to ``json_out``.

    Every command ends here, so ``--json`` and ``--json-out`` mean the same on each: the report's
    ``to_json()``, the text of :class:`binexport.report.Report`, on stdout or written atomically.
    """
    if as_json:
        click.echo(report.to_json(), nl=False)
    else:
        render(report)
    if json_out is not None:
        report.write_json(json_out)


def safe_line(text: object) -> str:
    """Foreign text (ONNX metadata, notes) on one line, with rich markup escaped."""
    from rich.markup import escape

    return escape(one_line(str(text)))


def safe_path(path: str) -> str:
    """A whole path, printable whatever bytes it holds, markup escaped."""
    from rich.markup import escape

    from binexport.fileio import shown

    return escape(shown(path))


def safe_name(path: str) -> str:
    """A file's name, printable whatever bytes it holds, markup escaped."""
    from rich.markup import escape

    from binexport.fileio import shown

    return escape(shown(Path(path).name))


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB ({n:,} B)"


def render_inspect(report: Any) -> None:
    from rich.table import Table

    a = report.architecture
    con = console()
    kind = report.format if report.layout == report.format else f"{report.format} ({report.layout})"
    con.print(f"[bold]{safe_path(report.path)}[/bold]: {kind}, {mib(report.file_bytes)}")
    variant = f", {a['variant']}" if a.get("family", "pytorch") != "pytorch" else ""
    con.print(
        f"architecture: {a['name']}, {a['num_classes']} classes, {a['mode']}{variant}"
        + (f" (from {report.binarized_from})" if report.binarized_from not in ("", "unknown") else "")
    )
    con.print(
        f"parameters: {report.binarized_params:,} binarised, {report.float_params:,} float"
        + (f"; [yellow]{report.zero_weights:,} exact-zero weights mapped to +1[/yellow]" if report.zero_weights else "")
    )
    t = Table(title="Where the bytes go")
    t.add_column("part")
    t.add_column("bytes", justify="right")
    t.add_column("share", justify="right")
    for part, n in report.breakdown.items():
        t.add_row(part, f"{n:,}", f"{100 * n / max(report.file_bytes, 1):.1f} %")
    con.print(t)
    t = Table(title="Size as each output format")
    t.add_column("format")
    t.add_column("size", justify="right")
    t.add_column("vs this file", justify="right")
    for fmt, n in report.output_sizes.items():
        if isinstance(n, int):
            rel = (
                f"{report.file_bytes / n:.1f}x smaller"
                if n < report.file_bytes
                else f"{n / max(report.file_bytes, 1):.2f}x larger"
            )
            t.add_row(fmt, mib(n), rel)
        else:
            t.add_row(fmt, str(n), "")
    con.print(t)
    for key, value in report.details.items():  # a format's own details: lists of rows become tables
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            t = Table(title=key)
            for col in value[0]:
                t.add_column(
                    col, justify="right" if isinstance(value[0][col], (int, float)) else "left", overflow="fold"
                )
            for row in value:
                t.add_row(*(f"{v:,}" if type(v) is int else str(v) for v in row.values()))
            con.print(t)
        elif isinstance(value, dict):
            con.print(f"{key}: " + ", ".join(f"{k}={v:,}" if type(v) is int else f"{k}={v}" for k, v in value.items()))
        else:
            con.print(f"{key}: {safe_line(value)}")


def render_pack(r: Any) -> None:
    from rich.table import Table

    con = console()
    t = Table(title=f"{r.architecture}, {r.num_classes} classes -> {r.output_format}")
    t.add_column("")
    t.add_column("size", justify="right")
    t.add_row(f"input ({r.input_layout})", mib(r.input_bytes))
    t.add_row("all weights as float32", mib(r.float32_bytes))
    t.add_row(f"output ({r.output_format}, {r.weights} weights)", mib(r.output_bytes))
    t.add_row("file to file", f"{r.file_ratio:.1f}x smaller")
    t.add_row("float32 weights to output", f"{r.weights_ratio:.1f}x smaller")
    con.print(t)
    if r.input_layout == "training-checkpoint":
        con.print(
            "The file-to-file ratio includes the optimizer state of the training checkpoint; "
            "the weights-to-weights ratio is the fair one."
        )
    con.print(
        f"wrote [bold]{safe_path(r.output)}[/bold]; re-read it and checked {r.tensors_checked} tensors bit for bit "
        f"({r.seconds:.2f} s)"
    )
    if r.binarized_anyway:
        con.print(
            "[yellow]warning: the model was full precision and was binarised (--binarize-anyway); "
            "its outputs changed[/yellow]"
        )
    if r.zero_weights:
        con.print(
            f"[yellow]warning: {r.zero_weights:,} weights were exactly zero (sign 0 at training time) "
            "and are stored as +1"
            + (
                "; the .bwn records where, so it stays exact"
                if r.output_format == "bwn" and r.zero_weights <= 65536
                else ""
            )
            + "[/yellow]"
        )


def render_sizes(demo: Any) -> None:
    """The demo's closing table: every file it wrote for a full-precision model, against float32 weights."""
    from rich.table import Table

    steps = demo.steps
    f32 = steps["pack-bwn"].float32_bytes
    t = Table(title="Sizes (full-precision model)")
    t.add_column("file")
    t.add_column("weights")
    t.add_column("size", justify="right")
    t.add_column("vs float32 weights", justify="right")
    t.add_row(
        "training checkpoint",
        "float32",
        mib(steps["pack-bwn"].input_bytes),
        f"{steps['pack-bwn'].input_bytes / f32:.2f}x",
    )
    t.add_row("all weights as float32", "float32", mib(f32), "1.00x")
    for name in ("pack-bwn", "pack-bwn-float16", "to-onnx"):
        r = steps[name]
        t.add_row(Path(r.output).name, r.weights, mib(r.output_bytes), f"{r.output_bytes / f32:.2f}x")
    console().print(t)


def render_onnx(r: Any) -> None:
    from rich.table import Table

    v = r.validation
    t = Table(title=f"{r.architecture}, {r.num_classes} classes -> ONNX ({r.weights})")
    t.add_column("")
    t.add_column("", justify="right")
    t.add_row(f"input ({r.input_layout})", mib(r.input_bytes))
    t.add_row("ONNX file", mib(r.output_bytes))
    t.add_row("weights / opset / batch", f"{r.weights} / {r.opset} / {r.batch}")
    t.add_row("graph input", r.input_kind)
    t.add_row("validated on", f"{v.provider.replace('ExecutionProvider', '')} vs PyTorch")
    if r.calibration is not None:
        c = r.calibration
        t.add_row("int8 calibration", f"{c.images} training images, p{c.percentile:g}")
        t.add_row("QLinearConv in ORT", str(v.int8_convs))
    t.add_row("validation rule", f"{v.rule} ({v.images} images: {v.real_images} real, {v.random_images} random)")
    if v.relative_bound is not None:
        t.add_row(
            "max |logit diff|", f"{v.max_abs_diff:.3g} ({v.max_relative_diff:.2f}x spread, limit {v.relative_bound:g}x)"
        )
        t.add_row("mean |logit diff|", f"{v.mean_relative_diff:.3f}x spread (limit {v.mean_relative_bound:g}x)")
    else:
        t.add_row("max |logit diff|", f"{v.max_abs_diff:.3g} (limit {v.tolerance:g})")
    agree = (
        f"{v.agreement:.1%} of {v.agreement_images} {v.agreement_on}"
        if v.agreement_images
        else "no image past the margin"
    )
    t.add_row("top-1 agreement", f"{agree} (needs {v.min_agreement:.0%})")
    if v.accuracy is not None:
        t.add_row(f"accuracy, {v.labelled_images} labelled", f"{v.accuracy:.1%} (reference {v.reference_accuracy:.1%})")
    t.add_row("export time", f"{r.seconds:.2f} s")
    con = console()
    con.print(t)
    for note in v.notes:
        con.print(f"[yellow]note: {note}[/yellow]")
    con.print(f"wrote [bold]{safe_path(r.output)}[/bold]; validated: [green]passed[/green]")


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)
