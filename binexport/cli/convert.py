"""The commands that read one model and describe or rewrite it: ``inspect``, ``pack`` and ``to-onnx``.

Each parses its options, calls one library function and hands the report to :func:`render.emit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import binexport.cli.options as opt
from binexport.cli.params import Batch, path, say_run_folder
from binexport.cli.render import emit, render_inspect, render_onnx, render_pack
from binexport.cli.render_ship import render_ort
from binexport.formats import PACK_FORMATS
from binexport.formats.bwn import ENCODING_CHOICES
from binexport.formats.onnx import DEFAULT_OPSET, MAX_FIXED_BATCH, MIN_OPSET, WEIGHTS_OPSET


@click.command()
@opt.model_argument
@opt.binarized
@opt.json_flag
@opt.json_out
def inspect(file: Path, binarized: bool | None, as_json: bool, json_out: Path | None) -> None:
    """Show what FILE is: format, architecture, parameters, where its bytes go, and output sizes."""
    from binexport.verbs.inspect import inspect as run

    emit(run(file, binarized=binarized), render_inspect, as_json, json_out)


@click.command()
@click.argument("ckpt", type=path(), callback=say_run_folder)
@opt.output("Output file (default: beside the input).")
@click.option(
    "--format",
    "fmt",
    metavar="|".join(PACK_FORMATS),
    default=PACK_FORMATS[0],
    show_default=True,
    help="Output format: 'packed' (the published layout), 'bwn' or 'safetensors' (docs/safetensors.md).",
)
@click.option(
    "--encoding",
    metavar="|".join(ENCODING_CHOICES),
    default=None,
    help="bwn only: how 1-bit tensors are stored: best (default), packed "
    "(every tensor memory-mappable), rans or rans-ref (see docs/FORMAT.md).",
)
@click.option(
    "--meta", multiple=True, metavar="KEY=VALUE", help="bwn and safetensors: a user metadata entry (repeatable)."
)
@opt.pack_weights
@opt.binarized
@click.option(
    "--binarize-anyway",
    is_flag=True,
    help="Binarise a full-precision model (changes its outputs); needed for --format packed.",
)
@opt.force
@opt.json_flag
@opt.json_out
def pack(
    ckpt: Path,
    output: Path | None,
    fmt: str,
    encoding: str | None,
    meta: tuple[str, ...],
    weights: str | None,
    binarized: bool | None,
    binarize_anyway: bool,
    force: bool,
    as_json: bool,
    json_out: Path | None,
) -> None:
    """Pack CKPT to one bit per binarised weight (.bwn: floats for a full-precision model), re-read, check every bit."""
    from binexport.errors import InputError
    from binexport.verbs.pack import pack as run

    options: dict[str, Any] = {"encoding": encoding} if encoding is not None else {}
    if weights is not None:
        options["weights"] = weights
    if meta:
        bad = [m for m in meta if "=" not in m or not m.split("=", 1)[0]]
        if bad:
            raise InputError(f"--meta {bad[0]!r}: expected KEY=VALUE, e.g. --meta dataset=CIFAR-100")
        options["metadata"] = dict(m.split("=", 1) for m in meta)
    report = run(ckpt, output, format=fmt, binarized=binarized, binarize_anyway=binarize_anyway, force=force, **options)
    emit(report, render_pack, as_json, json_out)


@click.command("to-onnx")
@click.argument("input_file", metavar="INPUT", type=path(), callback=say_run_folder)
@opt.output("Output .onnx file (default: beside INPUT).")
@opt.onnx_weights
@click.option(
    "--opset",
    type=click.IntRange(1, 10_000),
    default=None,
    help=f"ONNX opset ({MIN_OPSET} or newer) [default: {DEFAULT_OPSET}; {WEIGHTS_OPSET['int2']} for int2].",
)
@click.option(
    "--batch",
    type=Batch(),
    default="dynamic",
    show_default=True,
    help=f"'dynamic' or a fixed batch size (at most {MAX_FIXED_BATCH}).",
)
@click.option(
    "--normalize-inside",
    is_flag=True,
    help="Graph takes raw uint8 NHWC (N, 32, 32, 3) images and applies the CIFAR normalisation itself "
    "(default input: normalised NCHW, as in training).",
)
@opt.images("Also validate on this folder of labelled 32x32 PNGs (NAME_LABEL.png) and report accuracy.")
@opt.calibrate(
    "int8 only: training images that set the activation ranges: the training split under "
    "--data-root, one CIFAR training file, or a folder of labelled PNGs. Never test images."
)
@opt.data_root()
@opt.calibration_size
@opt.percentile
@opt.weight_zero_point
@click.option(
    "--ort-format",
    is_flag=True,
    help="Also write the .ort file for ONNX Runtime Mobile (Android/iOS) beside the output, the reduced build's "
    "operator config, and what ONNX Runtime's mobile usability check says (docs/phones.md).",
)
@opt.force
@opt.binarized
@opt.json_flag
@opt.json_out
def to_onnx(
    input_file: Path,
    output: Path | None,
    weights: str | None,
    opset: int | None,
    batch: str | int,
    normalize_inside: bool,
    images: Path | None,
    calibrate: str | None,
    data_root: Path | None,
    calibration_size: int,
    percentile: float,
    weight_zero_point: str | None,
    ort_format: bool,
    force: bool,
    binarized: bool | None,
    as_json: bool,
    json_out: Path | None,
) -> None:
    """Export INPUT to ONNX, validated on ONNX Runtime against the PyTorch reference before it is written."""
    from binexport.verbs.export import export_onnx

    report = export_onnx(
        input_file,
        output,
        weights=weights,
        opset=opset,
        batch=batch,
        normalize_inside=normalize_inside,
        force=force,
        images=images,
        binarized=binarized,
        calibrate=calibrate,
        data_root=data_root,
        calibration_size=calibration_size,
        percentile=percentile,
        weight_zero_point=None if weight_zero_point is None else int(weight_zero_point),
        ort_format=ort_format,
    )
    emit(report, _render_export, as_json, json_out)


def _render_export(report: Any) -> None:
    """The export's table, and the .ort file's where ``--ort-format`` wrote one."""
    render_onnx(report)
    if report.ort is not None:
        render_ort(report.ort)
