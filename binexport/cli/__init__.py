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
from binexport.cli.params import Batch, FiniteFloat, Group, Threads, one_line, path, say_run_folder
from binexport.cli.render import (
    console,
    render_bench,
    render_inspect,
    render_onnx,
    render_pack,
    render_sizes,
    render_verify,
    stderr_console,
)
from binexport.data import DATASET_NAMES
from binexport.data.synth import MAX_WIDTH
from binexport.formats import PACK_FORMATS
from binexport.formats.bwn import ENCODING_CHOICES
from binexport.formats.bwn import WEIGHTS_CHOICES as BWN_WEIGHTS
from binexport.formats.onnx import DEFAULT_OPSET, WEIGHT_ALIASES, WEIGHTS, WEIGHTS_OPSET
from binexport.runtimes import (
    COMPUTE_PRECISIONS,
    DEFAULT_RUNTIME,
    DEVICES,
    MAX_BATCH_SIZE,
    RUNTIME_ALIASES,
    RUNTIME_CHOICES,
    RUNTIMES,
)
from binexport.verbs.bench import DEFAULT_BATCH_SIZE as BENCH_BATCH
from binexport.verbs.bench import DEFAULT_SECONDS as BENCH_SECONDS
from binexport.verbs.export import (
    CALIBRATION_SIZE,
    DEFAULT_WEIGHT_ZERO_POINT,
    MAX_CALIBRATION_SIZE,
    PERCENTILE,
    WEIGHT_ZERO_POINTS,
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="binexport")
def main() -> None:
    """Export and compress 1-bit Wide ResNets (McDonnell, ICLR 2018) for deployment."""


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


_runtime_option = click.option(
    "--runtime",
    "runtime",
    type=click.Choice(RUNTIME_CHOICES),
    multiple=True,
    default=(DEFAULT_RUNTIME,),
    show_default=True,
    help="Runtime(s) for ONNX files, repeatable: onnxruntime (ONNX Runtime; short: ort), openvino (needs "
    'pip install "binexport[openvino]"), all (every one installed). Each ONNX file gets one row per runtime; '
    "checkpoints, packed and .bwn files run on the PyTorch reference.",
)
_precision_option = click.option(
    "--precision",
    type=click.Choice(COMPUTE_PRECISIONS),
    default=COMPUTE_PRECISIONS[0],
    show_default=True,
    help="OpenVINO compute precision: f32 (exact) or bf16 (faster where the CPU has bfloat16 instructions; "
    "lossy, held to its own tolerance and labelled).",
)
_mode_option = click.option(
    "--binarized/--full-precision",
    "binarized",
    default=None,
    help="Whether the checkpoint was trained with --binarize (default: read log.txt beside it).",
)


@main.command()
@click.argument("file", type=path(), callback=say_run_folder)
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def inspect(file: Path, binarized: bool | None, as_json: bool) -> None:
    """Show what FILE is: format, architecture, parameters, where its bytes go, and output sizes."""
    from binexport import inspect as run

    report = run(file, binarized=binarized)
    if as_json:
        _echo_json(report.to_dict())
        return
    render_inspect(report)


@main.command()
@click.argument("ckpt", type=path(), callback=say_run_folder)
@click.option("-o", "--output", type=path(), help="Output file (default: beside the input).")
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
@click.option(
    "--weights",
    type=click.Choice(BWN_WEIGHTS),
    default=None,
    help="bwn and safetensors, full-precision models: float32 (default, lossless), or float16/bfloat16 (conv weights "
    "rounded and stored half, declared lossy; BN statistics stay float32).",
)
@_mode_option
@click.option(
    "--binarize-anyway",
    is_flag=True,
    help="Binarise a full-precision model (changes its outputs); needed for --format packed.",
)
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
) -> None:
    """Pack CKPT to one bit per binarised weight (.bwn: floats for a full-precision model), re-read, check every bit."""
    from binexport import pack as run
    from binexport.errors import InputError

    options: dict[str, Any] = {"encoding": encoding} if encoding is not None else {}
    if weights is not None:
        options["weights"] = weights
    if meta:
        bad = [m for m in meta if "=" not in m or not m.split("=", 1)[0]]
        if bad:
            raise InputError(f"--meta {bad[0]!r}: expected KEY=VALUE, e.g. --meta dataset=CIFAR-100")
        options["metadata"] = dict(m.split("=", 1) for m in meta)
    report = run(ckpt, output, format=fmt, binarized=binarized, binarize_anyway=binarize_anyway, force=force, **options)
    if as_json:
        _echo_json(report.to_dict())
        return
    render_pack(report)


@main.command("to-onnx")
@click.argument("input_file", metavar="INPUT", type=path(), callback=say_run_folder)
@click.option("-o", "--output", type=path(), help="Output .onnx file (default: beside INPUT).")
@click.option(
    "--weights",
    type=click.Choice([*WEIGHTS, *WEIGHT_ALIASES]),
    default=None,
    help="1-bit (default for 1-bit models; 'packed' is its old name): 1 bit per binarised weight, turned "
    "into +-scale by standard ops when the session starts; float32 (default for full precision): "
    "plain weights. Both take float32 NCHW and give float32 logits. float16: half-precision weights "
    "and compute for GPUs; takes float16 NCHW and gives float16 logits. int8: QLinearConv on int8 "
    "CPU instructions (and TensorRT), 1-bit weights still stored as bits; needs --calibrate. int2 (1-bit "
    "models, opset 25): weights stay 2-bit in the runtime's memory too (~8 MiB for WRN-20-10), exact, "
    "slower than float32.",
)
@click.option(
    "--opset",
    type=click.IntRange(1, 10_000),
    default=None,
    help=f"ONNX opset (13 or newer) [default: {DEFAULT_OPSET}; {WEIGHTS_OPSET['int2']} for int2].",
)
@click.option(
    "--batch",
    type=Batch(),
    default="dynamic",
    show_default=True,
    help="'dynamic' or a fixed batch size (at most 4096).",
)
@click.option(
    "--normalize-inside",
    is_flag=True,
    help="Graph takes raw uint8 NHWC (N, 32, 32, 3) images and applies the CIFAR normalisation itself "
    "(default input: normalised NCHW, as in training).",
)
@click.option(
    "--images",
    type=path(),
    default=None,
    help="Also validate on this folder of labelled 32x32 PNGs (NAME_LABEL.png) and report accuracy.",
)
@click.option(
    "--calibrate",
    "calibrate",
    metavar="CIFAR100|CIFAR10|PATH",
    default=None,
    help="int8 only: training images that set the activation ranges: the training split under "
    "--data-root, one CIFAR training file, or a folder of labelled PNGs. Never test images.",
)
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder holding cifar-100-python/, cifar-10-batches-py/ or SVHN's test_32x32.mat (default: "
    "$BINEXPORT_DATA, else ~/.cache/binexport/data).",
)
@click.option(
    "--calibration-size",
    type=click.IntRange(1, MAX_CALIBRATION_SIZE),
    default=CALIBRATION_SIZE,
    show_default=True,
    help="int8: training images to calibrate on (the next 96 validate the export).",
)
@click.option(
    "--percentile",
    type=click.FloatRange(50, 100, min_open=True),
    default=PERCENTILE,
    show_default=True,
    help="int8: each activation's range is this percentile of its values (100 = min/max).",
)
@click.option(
    "--weight-zero-point",
    type=click.Choice([str(z) for z in WEIGHT_ZERO_POINTS]),
    default=None,
    help=f"int8: the block convs' weight zero point, which picks the CPU kernel (same logits, same size). "
    f"0: codes {{-1, +1}}: ONNX Runtime's symmetric direct convolution (no AMX) and OpenVINO's int8 convolution "
    f"(AMX where present). 1: codes {{0, 2}}: ONNX Runtime's QGEMM, which uses AMX on Intel Xeons, but OpenVINO "
    f"then runs float32 convs. Default: {DEFAULT_WEIGHT_ZERO_POINT} (docs/runtimes.md).",
)
@click.option(
    "--ort-format",
    is_flag=True,
    help="Also write the .ort file for ONNX Runtime Mobile (Android/iOS) beside the output, the reduced build's "
    "operator config, and what ONNX Runtime's mobile usability check says (docs/phones.md).",
)
@click.option("--force", is_flag=True, help="Replace an existing output.")
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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
) -> None:
    """Export INPUT to ONNX, validated on ONNX Runtime against the PyTorch reference before it is written."""
    from binexport import export_onnx

    r = export_onnx(
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
    if as_json:
        _echo_json(r.to_dict())
        return
    render_onnx(r)
    if r.ort is not None:
        from binexport.cli.render_ship import render_ort

        render_ort(r.ort)


@main.command()
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=path(), callback=say_run_folder)
@click.option(
    "--dataset",
    type=click.Choice(DATASET_NAMES, case_sensitive=False),
    default=None,
    help="Standard test set, in torchvision's layout under --data-root.",
)
@click.option(
    "--data-root",
    type=path(),
    default=None,
    help="Folder holding cifar-100-python/, cifar-10-batches-py/ or SVHN's test_32x32.mat (default: "
    "$BINEXPORT_DATA, else ~/.cache/binexport/data).",
)
@click.option("--download", is_flag=True, help="Fetch the official archive (md5-checked) if the test set is absent.")
@click.option(
    "--images",
    type=path(),
    default=None,
    help="Folder of labelled 32x32 PNGs (NAME_LABEL.png, or LABEL/ subfolders) instead of --dataset.",
)
@click.option(
    "--reference",
    type=path(),
    default=None,
    help="Checkpoint the artifacts came from (default: the first ARTIFACT that is not ONNX).",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=DEVICES[0],
    show_default=True,
    help="auto takes CUDA where PyTorch sees a GPU; cuda fails if any runtime would not really use it.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=256,
    show_default=True,
    help=f"Images per forward call (at most {MAX_BATCH_SIZE}).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N images.")
@click.option(
    "--json",
    "json_out",
    type=path(),
    default=None,
    help="Also write the report here as JSON (written even when rows fail).",
)
@_runtime_option
@_precision_option
@_mode_option
def verify(
    artifacts: tuple[Path, ...],
    dataset: str | None,
    data_root: Path | None,
    download: bool,
    images: Path | None,
    reference: Path | None,
    device: str,
    batch_size: int,
    limit: int | None,
    json_out: Path | None,
    runtime: tuple[str, ...],
    precision: str,
    binarized: bool | None,
) -> None:
    """Check that every ARTIFACT classifies like the reference: accuracy, agreement, logit differences, speed.

    Exit 0 when every artifact meets its tolerance, 1 when any fails, 2 on bad input.
    """
    from binexport import verify as run
    from binexport._fileio import check_output

    if json_out is not None:
        check_output(json_out, force=True)  # a bad --json path fails now, not after a 10,000-image run
    bars = _bars()
    tasks: dict[str, Any] = {}

    def progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], completed=done)

    with bars:
        report = run(
            list(artifacts),
            dataset=dataset,
            data_root=data_root,
            download=download,
            images=images,
            reference=reference,
            device=device,
            batch_size=batch_size,
            limit=limit,
            binarized=binarized,
            runtime=runtime,
            precision=precision,
            progress=progress,
        )
    render_verify(report)
    if json_out is not None:
        report.write_json(json_out)
    report.raise_for_failures()


def _bars() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    con = stderr_console()  # bars only on a terminal: a piped stderr carries error lines and nothing else
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=con,
        transient=True,
        disable=not con.is_terminal,
    )


@main.command()
@click.argument("artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=path(), callback=say_run_folder)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=BENCH_BATCH,
    show_default=True,
    help="Batch of the throughput measurement (latency is measured at batch 1).",
)
@click.option(
    "--seconds",
    type=FiniteFloat(0, 3600, min_open=True),
    default=BENCH_SECONDS,
    show_default=True,
    help="Timing budget per artifact, over interleaved rounds.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=DEVICES[0],
    show_default=True,
    help="auto takes CUDA where PyTorch sees a GPU.",
)
@click.option(
    "--threads",
    type=Threads(),
    default=0,
    show_default=True,
    help="Intra-op threads per runtime (0: one per core; at most 4 per CPU).",
)
@click.option("--json", "json_out", type=path(), default=None, help="Also write the report here as JSON.")
@_runtime_option
@_precision_option
def bench(
    artifacts: tuple[Path, ...],
    batch_size: int,
    seconds: float,
    device: str,
    threads: int,
    json_out: Path | None,
    runtime: tuple[str, ...],
    precision: str,
) -> None:
    """Measure what each ARTIFACT costs to deploy: size, load time, peak memory, latency, throughput.

    Each artifact runs in its own process on the runtime it deploys with; ratios compare with the first.
    """
    from binexport import bench as run
    from binexport._fileio import check_output

    if json_out is not None:
        check_output(json_out, force=True)
    bars = _bars()
    task = bars.add_task("timing (interleaved)", total=None)
    with bars:
        report = run(
            list(artifacts),
            batch_size=batch_size,
            seconds=seconds,
            device=device,
            threads=threads,
            runtime=runtime,
            precision=precision,
            progress=lambda _, done, total: bars.update(task, completed=done, total=total),
        )
    render_bench(report)
    if json_out is not None:
        report.write_json(json_out)


@main.command()
@click.option(
    "--checkpoint",
    type=path(),
    default=None,
    help="Use this model file (any format binexport reads) instead of the shipped McDonnell model.",
)
@click.option(
    "--synthetic",
    is_flag=True,
    help="Write a synthetic 204.5 MiB WRN-20 training checkpoint (random weights) instead: shows "
    "205 MB -> 3.5 MB packing, on synthetic images.",
)
@click.option(
    "--images",
    type=path(),
    default=None,
    help="Verify on this folder of labelled 32x32 PNGs instead of the shipped CIFAR-10 test images.",
)
@click.option(
    "--out",
    "out_dir",
    type=path(),
    default=Path("binexport-demo"),
    show_default=True,
    help="Folder for the demo's files (replaced files inside it only).",
)
@click.option(
    "--width",
    type=FiniteFloat(0, MAX_WIDTH, min_open=True),
    default=10,
    show_default=True,
    help=f"Width of the --synthetic WRN-20: a multiple of 1/16 in (0, {MAX_WIDTH}].",
)
@click.option(
    "--full-precision",
    "full_precision",
    is_flag=True,
    help="Demo a full-precision model: a synthetic checkpoint trained without --binarize; .bwn float32 "
    "and float16, ONNX float32, verify, and a size table.",
)
@click.option(
    "--calibrate",
    metavar="CIFAR100|CIFAR10|PATH",
    default=None,
    help="Training images for the int8 export (as to-onnx); --synthetic makes its own.",
)
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Data root whose CIFAR-10 training batches calibrate int8 (default: 192 of the 256 shipped training images).",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Verify on the first N images only.")
@click.option(
    "--bench-seconds",
    type=FiniteFloat(0, 600),
    default=4.0,
    show_default=True,
    help="Timing budget per artifact of the closing benchmark (0 skips it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print every step's report as one JSON document.")
def demo(
    checkpoint: Path | None,
    synthetic: bool,
    images: Path | None,
    out_dir: Path,
    width: float,
    full_precision: bool,
    calibrate: str | None,
    data_root: Path | None,
    limit: int | None,
    bench_seconds: float,
    as_json: bool,
) -> None:
    """Run the whole job on real weights: inspect, .bwn, ONNX, verify and bench McDonnell's 1-bit WRN-20-10.

    The model (his MATLAB CIFAR-10 file, MIT licence), 200 real CIFAR-10 test images and 256 real CIFAR-10
    training images (int8 calibrates on 192, validates on 64) ship with binexport; nothing is downloaded. --synthetic runs the older demo on a synthetic training checkpoint.
    """
    from binexport.errors import InputError
    from binexport.verbs.demo import run_demo

    if (synthetic or full_precision) and checkpoint is not None:
        raise InputError("give --synthetic / --full-precision or --checkpoint, not both")
    from binexport.data.synth import make_arch

    make_arch(20, width, 100)  # a --width off the 1/16 grid is refused before anything runs
    renderers = {
        "inspect": render_inspect,
        "pack": render_pack,
        "pack-bwn": render_pack,
        "pack-bwn-float16": render_pack,
        "to-onnx": render_onnx,
        "to-onnx-int8": render_onnx,
        "verify": render_verify,
        "bench": render_bench,
    }
    con = console()

    def show(name: str, report: Any) -> None:
        if not as_json:
            con.rule(f"[bold]binexport {name.replace('-int8', ' (int8)')}")
            renderers[name](report)

    if not as_json:
        what = (
            "; writing a synthetic WRN-20 training checkpoint first"
            if synthetic or full_precision
            else ""
            if checkpoint
            else "; model: M. D. McDonnell's 1-bit WRN-20-10 for CIFAR-10 (MATLAB, MIT licence)"
        )
        con.print(f"binexport demo: files go to [bold]{out_dir}[/bold]{what}")
    report = run_demo(
        out_dir,
        checkpoint=checkpoint,
        synthetic=synthetic,
        width=width,
        images=images,
        calibrate=calibrate,
        data_root=data_root,
        bench_seconds=bench_seconds,
        limit=limit,
        full_precision=full_precision,
        on_step=show,
    )
    if as_json:
        _echo_json(report.to_dict())
    else:
        con.rule()
        if full_precision:
            render_sizes(report)
        con.print(f"model: {one_line(str(report.checkpoint))}; verified on {one_line(report.data)}", markup=False)
        for note in report.notes:
            con.print(note, markup=False)
        if report.synthetic_checkpoint:
            con.print(
                "The checkpoint has random weights, so accuracy means nothing here; agreement and logit "
                "differences do. Try: binexport demo (real weights) or --checkpoint CKPT --images DIR"
            )
    report.steps["verify"].raise_for_failures()


@main.command()
@click.argument("model", type=path(), callback=say_run_folder)
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True, type=path())
@click.option("--top-k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Classes listed per image.")
@click.option(
    "--labels",
    default=None,
    metavar="CIFAR10|CIFAR100|SVHN|FILE",
    help="Class names: a built-in set or a text file, one name a line (default: CIFAR-10 names for 10 classes, "
    "CIFAR-100 names for 100).",
)
@click.option(
    "--runtime",
    type=click.Choice([*RUNTIMES, *RUNTIME_ALIASES]),
    default=DEFAULT_RUNTIME,
    show_default=True,
    help="Runtime for ONNX and .ort files (checkpoints, packed and .bwn files run on the PyTorch reference).",
)
@click.option("--device", type=click.Choice(DEVICES), default=DEVICES[0], show_default=True)
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def predict(
    model: Path,
    images: tuple[Path, ...],
    top_k: int,
    labels: str | None,
    runtime: str,
    device: str,
    binarized: bool | None,
    as_json: bool,
) -> None:
    """Name the classes MODEL sees in each IMAGE (PNG, any size up to 1024x1024: resized to 32x32).

    Any file binexport runs: checkpoint, packed, .bwn, .mat, ONNX, .ort. Images are resized by box (area)
    averaging when shrinking and bilinear interpolation when growing, then normalised as the model expects.
    """
    from binexport import predict as run
    from binexport.cli.render_ship import render_predict

    report = run(model, list(images), top_k=top_k, labels=labels, runtime=runtime, device=device, binarized=binarized)
    if as_json:
        _echo_json(report.to_dict())
        return
    render_predict(report)


@main.command()
@click.argument("model", type=path(), callback=say_run_folder)
@click.option("-o", "--output", "out", type=path(), required=True, help="The folder to create.")
@click.option(
    "--dataset", type=click.Choice(DATASET_NAMES, case_sensitive=False), default=None, help="Test set to verify on."
)
@click.option("--data-root", type=path(), default=None, help="Folder holding the test (and calibration) sets.")
@click.option("--images", type=path(), default=None, help="Folder of labelled 32x32 PNGs instead of --dataset.")
@click.option(
    "--calibrate",
    metavar="CIFAR100|CIFAR10|PATH",
    default=None,
    help="Training images for onnx/model_int8.onnx (1-bit models), as to-onnx takes them.",
)
@click.option("--calibration-size", type=click.IntRange(1, MAX_CALIBRATION_SIZE), default=CALIBRATION_SIZE)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Verify on the first N images only.")
@click.option("--labels", default=None, metavar="CIFAR10|CIFAR100|SVHN|FILE", help="Class names (default by count).")
@click.option("--license", "license_", default=None, help="The model's licence for the card (default: unknown).")
@click.option("--repo-id", default="USER/MODEL", show_default=True, help="Hub repository for the printed command.")
@click.option("--bench", is_flag=True, help="Also benchmark every file on this CPU (bench.json).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@_mode_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def bundle(
    model: Path,
    out: Path,
    dataset: str | None,
    data_root: Path | None,
    images: Path | None,
    calibrate: str | None,
    calibration_size: int,
    limit: int | None,
    labels: str | None,
    license_: str | None,
    repo_id: str,
    bench: bool,
    force: bool,
    binarized: bool | None,
    as_json: bool,
) -> None:
    """Write a Hub-ready folder: safetensors, .bwn, ONNX and .ort variants, config.json, a model card with the
    accuracy verify measured on your data, verify.json and SHA256SUMS; renamed into place only when all verified."""
    from binexport import bundle as run
    from binexport.cli.render_ship import render_bundle

    r = run(
        model,
        out,
        dataset=dataset,
        data_root=data_root,
        images=images,
        calibrate=calibrate,
        calibration_size=calibration_size,
        limit=limit,
        labels=labels,
        license=license_,
        bench=bench,
        force=force,
        binarized=binarized,
        repo_id=repo_id,
    )
    if as_json:
        _echo_json(r.to_dict())
        return
    render_bundle(r)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
