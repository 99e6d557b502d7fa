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
    _render_inspect(report)


def _render_inspect(report: Any) -> None:
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
            rel = (f"{report.file_bytes / n:.1f}x smaller" if n < report.file_bytes
                   else f"{n / max(report.file_bytes, 1):.2f}x larger")
            t.add_row(fmt, _mib(n), rel)
        else:
            t.add_row(fmt, str(n), "")
    con.print(t)
    for key, value in report.details.items():  # a format's own details: lists of rows become tables
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            t = Table(title=key)
            for col in value[0]:
                t.add_column(col, justify="right" if isinstance(value[0][col], (int, float)) else "left",
                             overflow="fold")
            for row in value:
                t.add_row(*(f"{v:,}" if type(v) is int else str(v) for v in row.values()))
            con.print(t)
        elif isinstance(value, dict):
            con.print(f"{key}: " + ", ".join(f"{k}={v:,}" if type(v) is int else f"{k}={v}"
                                               for k, v in value.items()))
        else:
            con.print(f"{key}: {value}")


@main.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: beside the input).")
@click.option("--format", "fmt", default="packed", show_default=True,
              help="Output format: 'packed' (the published layout) or 'bwn'.")
@click.option("--encoding", default=None, help="bwn only: how 1-bit tensors are stored: best (default), packed "
              "(every tensor memory-mappable), rans or rans-ref (see docs/FORMAT.md).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="bwn only: a user metadata entry (repeatable).")
@_mode_option
@click.option("--binarize-anyway", is_flag=True, help="Binarise a full-precision model (changes its outputs).")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def pack(ckpt: Path, output: Path | None, fmt: str, encoding: str | None, meta: tuple[str, ...],
         binarized: bool | None, binarize_anyway: bool, force: bool, as_json: bool) -> None:
    """Pack CKPT to one bit per binarised weight, then re-read and check every bit."""
    from binexport.api import pack as run
    from binexport.errors import InputError

    options: dict[str, Any] = {"encoding": encoding} if encoding is not None else {}
    if meta:
        bad = [m for m in meta if "=" not in m or not m.split("=", 1)[0]]
        if bad:
            raise InputError(f"--meta {bad[0]!r}: expected KEY=VALUE, e.g. --meta dataset=CIFAR-100")
        options["metadata"] = dict(m.split("=", 1) for m in meta)
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


def _batch(value: str) -> str | int:
    if value == "dynamic":
        return value
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"expected 'dynamic' or a positive integer, got {value!r}")
    return int(value)


@main.command("to-onnx")
@click.argument("input_file", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output .onnx file (default: beside INPUT).")
@click.option("--weights", type=click.Choice(["packed", "float32", "float16"]), default=None,
              help="packed (default for 1-bit models): 1 bit per binarised weight, turned into +-scale by "
                   "standard ops when the session starts; float32 (default for full precision): plain weights. "
                   "Both take float32 NCHW and give float32 logits. float16: half-precision weights and compute "
                   "for GPUs; takes float16 NCHW and gives float16 logits.")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset (13 or newer).")
@click.option("--batch", default="dynamic", show_default=True, help="'dynamic' or a fixed batch size.")
@click.option("--normalize-inside", is_flag=True,
              help="Graph takes raw uint8 NHWC (N, 32, 32, 3) images and applies the CIFAR normalisation itself "
                   "(default input: normalised NCHW, as in training).")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Also validate on this folder of labelled 32x32 PNGs (NAME_LABEL.png) and report accuracy.")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def to_onnx(input_file: Path, output: Path | None, weights: str | None, opset: int, batch: str,
            normalize_inside: bool, images: Path | None, force: bool, as_json: bool) -> None:
    """Export INPUT to ONNX, validated on ONNX Runtime against the PyTorch reference before it is written."""
    from binexport.onnx_export import export_onnx

    r = export_onnx(input_file, output, weights=weights, opset=opset, batch=_batch(batch),
                    normalize_inside=normalize_inside, force=force, images=images)
    if as_json:
        _echo_json(r.to_dict())
        return
    _render_onnx(r)


def _render_onnx(r: Any) -> None:
    from rich.table import Table

    v = r.validation
    t = Table(title=f"{r.architecture}, {r.num_classes} classes -> ONNX ({r.weights})")
    t.add_column("")
    t.add_column("", justify="right")
    t.add_row(f"input ({r.input_format})", _mib(r.input_bytes))
    t.add_row("ONNX file", _mib(r.output_bytes))
    t.add_row("weights / opset / batch", f"{r.weights} / {r.opset} / {r.batch}")
    t.add_row("graph input", r.input_kind)
    t.add_row(f"max |logit diff| vs PyTorch ({v.provider})", f"{v.max_abs_diff:.3g} (limit {v.tolerance:g})")
    t.add_row("top-1 agreement", f"{v.agreement:.1%} of {v.random_images + v.labelled_images} images")
    if v.accuracy is not None:
        t.add_row(f"accuracy on {v.labelled_images} labelled images",
                  f"{v.accuracy:.1%} (reference {v.reference_accuracy:.1%})")
    t.add_row("export time", f"{r.seconds:.2f} s")
    _console().print(t)
    _console().print(f"wrote [bold]{r.output}[/bold]; validated: [green]passed[/green]")


@main.command()
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dataset", type=click.Choice(["CIFAR100", "CIFAR10"], case_sensitive=False), default=None,
              help="Standard test set, in torchvision's layout under --data-root.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Folder holding cifar-100-python/ or cifar-10-batches-py/ (default: $BINEXPORT_DATA, else "
                   "~/.cache/binexport/data).")
@click.option("--download", is_flag=True, help="Fetch the official archive (md5-checked) if the test set is absent.")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Folder of labelled 32x32 PNGs (NAME_LABEL.png, or LABEL/ subfolders) instead of --dataset.")
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Checkpoint the artifacts came from (default: the first ARTIFACT that is not ONNX).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True,
              help="auto takes CUDA where PyTorch sees a GPU; cuda fails if any runtime would not really use it.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report here as JSON (written even when rows fail).")
@_mode_option
def verify(artifacts: tuple[Path, ...], dataset: str | None, data_root: Path | None, download: bool,
           images: Path | None, reference: Path | None, device: str, batch_size: int, limit: int | None,
           json_out: Path | None, binarized: bool | None) -> None:
    """Check that every ARTIFACT classifies like the reference: accuracy, agreement, logit differences, speed.

    Exit 0 when every artifact meets its tolerance, 1 when any fails, 2 on bad input.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from binexport.verify import verify as run

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=_stderr_console(), transient=True)
    tasks: dict[str, Any] = {}

    def progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done)

    with bars:
        report = run(list(artifacts), dataset=dataset, data_root=data_root, download=download, images=images,
                     reference=reference, device=device, batch_size=batch_size, limit=limit, binarized=binarized,
                     progress=progress)
    _render_verify(report)
    if json_out is not None:
        report.write_json(json_out)
    report.raise_for_failures()


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _render_verify(r: Any) -> None:
    from rich import box
    from rich.table import Table

    def diff(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1e}"

    what = Path(r.data_source).name if r.data == "images" else r.data
    t = Table(title=f"{what}: {r.num_images:,} images, {r.num_classes} classes, on {r.device}", box=box.SIMPLE_HEAD,
              pad_edge=False, collapse_padding=True)
    t.add_column("file", overflow="fold", min_width=12)
    for col in ("weights\nruntime", "top-1\n%", "top-5\n%", "agree\n%", "max\n|Δ|", "mean\n|Δ|",
                "img/s", "result"):
        t.add_column(col, justify="left" if col[0] in "wr" else "right", no_wrap=True)
    for row in [r.reference, *r.artifacts]:
        result = "ref" if row.role == "reference" else ("[green]PASS[/green]" if row.passed else "[bold]FAIL[/bold]")
        t.add_row(Path(row.path).name, f"{row.weights}\n{row.provider.replace('ExecutionProvider', '')}",
                  f"{100 * row.top1:.2f}", f"{100 * row.top5:.2f}", f"{100 * row.agreement:.2f}",
                  diff(row.max_abs_logit_diff), diff(row.mean_abs_logit_diff), f"{row.images_per_s:,.0f}", result,
                  style=None if row.passed else "red")
    con = _console()
    con.print(t)
    for row in r.artifacts:
        for note in row.notes:
            con.print(f"note: {Path(row.path).name}: {note}")
    con.print("[green]every artifact classifies like the reference[/green]" if r.passed else
              f"[bold red]{len(r.failures)} problem(s); rows marked FAIL[/bold red]")


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Use this checkpoint (any layout binexport reads) instead of making a synthetic one.")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Verify on this folder of labelled 32x32 PNGs instead of synthetic CIFAR-100-layout images.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("binexport-demo"), show_default=True,
              help="Folder for the demo's files (replaced files inside it only).")
@click.option("--width", type=float, default=10, show_default=True, help="Width of the synthetic WRN-20.")
@click.option("--json", "as_json", is_flag=True, help="Print every step's report as one JSON document.")
def demo(checkpoint: Path | None, images: Path | None, out_dir: Path, width: float, as_json: bool) -> None:
    """Run the whole job on a built-in default: inspect, pack, .bwn, ONNX and verify a WRN-20-10 checkpoint.

    With no --checkpoint it writes a 204.5 MiB training checkpoint in the training code's exact layout
    (random weights, log.txt saying it was binarised); nothing is downloaded.
    """
    from binexport.demo import run_demo

    renderers = {"inspect": _render_inspect, "pack": _render_pack, "pack-bwn": _render_pack,
                 "to-onnx": _render_onnx, "verify": _render_verify}
    con = _console()

    def show(name: str, report: Any) -> None:
        if not as_json:
            con.rule(f"[bold]binexport {name}")
            renderers[name](report)

    if not as_json:
        con.print(f"binexport demo: files go to [bold]{out_dir}[/bold]"
                  + ("" if checkpoint else "; writing a synthetic WRN-20-10 training checkpoint first"))
    report = run_demo(out_dir, checkpoint=checkpoint, width=width, images=images, on_step=show)
    if as_json:
        _echo_json(report.to_dict())
    else:
        con.rule()
        con.print(f"checkpoint: {report.checkpoint}; verified on {report.data}")
        if report.synthetic_checkpoint:
            con.print("The checkpoint has random weights, so accuracy means nothing here; agreement and logit "
                      "differences do. Try: binexport demo --checkpoint CKPT --images DIR")
    report.steps["verify"].raise_for_failures()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
