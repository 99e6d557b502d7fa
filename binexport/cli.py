"""The ``binexport`` command: parse options, call one library function, render its report.

Only this layer imports rich. Library errors become one line on stderr:
exit 2 for bad input, 1 for a failed check. Heavy imports (torch, onnx) happen
inside commands so ``--help`` and ``--version`` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from binexport import __version__
from binexport.errors import BinexportError


class _Group(click.Group):
    """Turns binexport's own errors into one line on stderr and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BinexportError as e:
            click.echo(f"binexport: error: {e}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:
            click.echo(f"binexport: error: {e.filename or ''}: {e.strerror or e}".replace(": : ", ": "), err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="binexport")
def main() -> None:
    """Export and compress 1-bit Wide ResNets (McDonnell, ICLR 2018) for deployment."""


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB ({n:,} B)"


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


_mode_option = click.option("--binarized/--full-precision", "binarized", default=None,
                            help="Whether the checkpoint was trained with --binarize (default: read log.txt beside it).")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(file: Path, binarized: bool | None, as_json: bool) -> None:
    """Show what FILE is: format, architecture, parameters, where its bytes go, and output sizes."""
    from binexport.api import inspect as run

    report = run(file, binarized=binarized)
    if as_json:
        _echo_json(report.to_dict())
        return
    from rich.table import Table

    a = report.architecture
    con = _console()
    con.print(f"[bold]{report.path}[/bold]: {report.format}, {_mib(report.file_bytes)}")
    con.print(f"architecture: {a['name']}, {a['num_classes']} classes, {a['mode']}"
              + (f" (from {report.binarized_from})" if report.binarized_from not in ("", "unknown") else ""))
    con.print(f"parameters: {report.binarised_params:,} binarised, {report.float_params:,} float"
              + (f"; [yellow]{report.zero_weights:,} exact-zero weights mapped to +1[/yellow]"
                 if report.zero_weights else ""))
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
            t.add_row(fmt, _mib(n), f"{report.file_bytes / n:.1f}x smaller" if n else "")
        else:
            t.add_row(fmt, str(n), "")
    con.print(t)
    for key, value in report.details.items():
        con.print(f"{key}: {value}")


@main.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: beside the input).")
@click.option("--format", "fmt", default="packed", show_default=True,
              help="Output format: 'packed' (the published layout) or 'bwn'.")
@click.option("--encoding", default=None, help="bwn only: how 1-bit tensors are stored (see docs/FORMAT.md).")
@_mode_option
@click.option("--binarize-anyway", is_flag=True, help="Binarise a full-precision model (changes its outputs).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pack(ckpt: Path, output: Path | None, fmt: str, encoding: str | None, binarized: bool | None,
         binarize_anyway: bool, force: bool, as_json: bool) -> None:
    """Pack CKPT to one bit per binarised weight, then re-read and check every bit."""
    from binexport.api import pack as run

    options = {"encoding": encoding} if encoding is not None else {}
    report = run(ckpt, output, format=fmt, binarized=binarized, binarize_anyway=binarize_anyway, force=force,
                 **options)
    if as_json:
        _echo_json(report.to_dict())
        return
    _render_pack(report)


def _render_pack(r: Any) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"{r.architecture}, {r.num_classes} classes -> {r.output_format}")
    t.add_column("")
    t.add_column("size", justify="right")
    t.add_row(f"input ({r.input_format})", _mib(r.input_bytes))
    t.add_row("all weights as float32", _mib(r.float32_bytes))
    t.add_row(f"output ({r.output_format})", _mib(r.output_bytes))
    t.add_row("file to file", f"{r.file_ratio:.1f}x smaller")
    t.add_row("float32 weights to output", f"{r.weights_ratio:.1f}x smaller")
    con.print(t)
    if r.input_format == "training-checkpoint":
        con.print("The file-to-file ratio includes the optimizer state of the training checkpoint; "
                  "the weights-to-weights ratio is the fair one.")
    con.print(f"wrote [bold]{r.output}[/bold]; re-read it and checked {r.tensors_checked} tensors bit for bit "
              f"({r.seconds:.2f} s)")
    if r.binarized_anyway:
        con.print("[yellow]warning: the model was full precision and was binarised (--binarize-anyway); "
                  "its outputs changed[/yellow]")
    if r.zero_weights:
        con.print(f"[yellow]warning: {r.zero_weights:,} weights were exactly zero (sign 0 at training time) "
                  "and are stored as +1[/yellow]")


# --- to-onnx command ---


# --- verify command ---


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Use this checkpoint instead of making a synthetic one.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("binexport-demo"), show_default=True,
              help="Folder for the demo's files.")
@click.option("--width", type=float, default=10, show_default=True, help="Width of the synthetic WRN-20.")
def demo(checkpoint: Path | None, out_dir: Path, width: float) -> None:
    """Run the whole job on a built-in default: make a WRN-20-10 training checkpoint, inspect, pack, export."""
    from binexport.demo import run_demo

    run_demo(out_dir, checkpoint=checkpoint, width=width, console=_console(), render_pack=_render_pack)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
