"""Every option the commands share, written once (in the style of pip's ``cli/cmdoptions.py``).

Each name here is a Click decorator (or a function returning one, where commands phrase the help for their
own job); a command stacks the ones it takes. Choices, defaults and bounds come from the library's constants,
so the CLI can never offer what the library refuses, and ``tests/test_cli_options.py`` checks that they do.

``--json`` means one thing on every command: print the report as JSON on stdout, instead of tables.
``--json-out PATH`` writes the same JSON to a file (atomically). ``verify`` and ``bench`` once took
``--json PATH``; that spelling still writes the file for a release, with a one-line deprecation notice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from binexport.calibrate import CALIBRATION_SIZE, MAX_CALIBRATION_SIZE, PERCENTILE
from binexport.cli.params import Threads, one_line, path, say_run_folder
from binexport.data import DATASET_NAMES
from binexport.data.calibration import SOURCES as CALIBRATION_SOURCES
from binexport.data.labels import BUILTIN_LABELS
from binexport.errors import InputError
from binexport.fileio import check_output
from binexport.formats.bwn import WEIGHTS_CHOICES as BWN_WEIGHTS
from binexport.formats.onnx import WEIGHT_ALIASES, WEIGHTS
from binexport.formats.onnx.int8 import DEFAULT_WEIGHT_ZERO_POINT, WEIGHT_ZERO_POINTS
from binexport.runtimes import (
    COMPUTE_PRECISIONS,
    DEFAULT_RUNTIME,
    DEVICES,
    MAX_BATCH_SIZE,
    RUNTIME_ALIASES,
    RUNTIME_CHOICES,
    RUNTIMES,
    THREADS_PER_CPU,
)

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

#: What ``--json`` holds when given without a value (verify and bench, during the deprecation of ``--json PATH``).
JSON_STDOUT = "-"
DATA_ROOT_HELP = (
    "Folder holding cifar-100-python/, cifar-10-batches-py/ or SVHN's test_32x32.mat (default: "
    "$BINEXPORT_DATA, else ~/.cache/binexport/data)."
)

# --- reports -------------------------------------------------------------------------------------------------

json_flag = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout (no tables).")
json_out = click.option(
    "--json-out", type=path(), default=None, metavar="PATH", help="Also write the report to PATH as JSON."
)
#: ``--json`` on verify and bench: a flag like everywhere, which still takes the old ``--json PATH`` for a release.
json_flag_or_old_path = click.option(
    "--json",
    "as_json",
    is_flag=False,
    flag_value=JSON_STDOUT,
    default=None,
    metavar="",
    help="Print the report as JSON on stdout (no tables). The old '--json PATH' still writes PATH, "
    "with a deprecation notice: use --json-out PATH.",
)


def json_outputs(as_json: str | bool | None, out: Path | None) -> tuple[bool, Path | None]:
    """``(print JSON?, file to write it to)`` from ``--json`` and ``--json-out``; the old ``--json PATH`` warns.

    Raises:
        InputError: the old ``--json PATH`` names a path ``check_output`` refuses, or an existing file that is
            not ``.json`` (``verify --json model.onnx`` now means "print", and must not overwrite the model);
            or both ``--json PATH`` and ``--json-out`` are given.
    """
    if as_json is None or isinstance(as_json, bool):
        return bool(as_json), out
    if as_json == JSON_STDOUT:
        return True, out
    if not as_json:
        raise InputError("--json '': the path is empty; --json alone prints the report, --json-out PATH writes it")
    old = Path(as_json)
    if out is not None:
        raise InputError(f"--json {one_line(as_json)} and --json-out {one_line(str(out))}: give --json-out only")
    if old.suffix.lower() != ".json" and (old.is_file() or old.is_symlink()):
        raise InputError(
            f"--json {one_line(as_json)}: an existing file that is not .json; --json now prints the report on "
            "stdout (put it after the files) and --json-out PATH writes it"
        )
    check_output(old, force=True)  # a refused path gets its one error line, without the notice before it
    click.echo(
        f"binexport: warning: '--json {one_line(as_json)}' is deprecated and goes in 0.4; "
        f"use '--json-out {one_line(as_json)}' ('--json' alone prints the report on stdout)",
        err=True,
    )
    return False, old


# --- the model and how it was trained -------------------------------------------------------------------------

model_argument = click.argument("file", type=path(), callback=say_run_folder)
artifacts_argument = click.argument(
    "artifacts", metavar="ARTIFACT...", nargs=-1, required=True, type=path(), callback=say_run_folder
)
binarized = click.option(
    "--binarized/--full-precision",
    "binarized",
    default=None,
    help="Whether the checkpoint was trained with --binarize (default: read log.txt beside it).",
)
force = click.option("--force", is_flag=True, help="Replace an existing output.")


def output(help: str, required: bool = False) -> Decorator[Any]:
    """``-o/--output PATH``: where the command writes (each command says its default)."""
    return click.option("-o", "--output", type=path(), default=None, required=required, help=help)


pack_weights = click.option(
    "--weights",
    type=click.Choice(BWN_WEIGHTS),
    default=None,
    help="bwn and safetensors, full-precision models: float32 (default, lossless), or float16/bfloat16 (conv weights "
    "rounded and stored half, declared lossy; BN statistics stay float32).",
)
onnx_weights = click.option(
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

# --- int8 calibration -----------------------------------------------------------------------------------------


def calibrate(help: str) -> Decorator[Any]:
    """``--calibrate SOURCE``: training images that set int8's activation ranges (a dataset name or a path)."""
    return click.option("--calibrate", metavar="|".join([*CALIBRATION_SOURCES, "PATH"]), default=None, help=help)


calibration_size = click.option(
    "--calibration-size",
    type=click.IntRange(1, MAX_CALIBRATION_SIZE),
    default=CALIBRATION_SIZE,
    show_default=True,
    help="int8: training images to calibrate on (the next 96 validate the export).",
)
percentile = click.option(
    "--percentile",
    type=click.FloatRange(50, 100, min_open=True),
    default=PERCENTILE,
    show_default=True,
    help="int8: each activation's range is this percentile of its values (100 = min/max).",
)
weight_zero_point = click.option(
    "--weight-zero-point",
    type=click.Choice([str(z) for z in WEIGHT_ZERO_POINTS]),
    default=None,
    help=f"int8: the block convs' weight zero point, which picks the CPU kernel (same logits, same size). "
    f"0: codes {{-1, +1}}: ONNX Runtime's symmetric direct convolution (no AMX) and OpenVINO's int8 convolution "
    f"(AMX where present). 1: codes {{0, 2}}: ONNX Runtime's QGEMM, which uses AMX on Intel Xeons, but OpenVINO "
    f"then runs float32 convs. Default: {DEFAULT_WEIGHT_ZERO_POINT} (docs/runtimes.md).",
)

# --- images ---------------------------------------------------------------------------------------------------

dataset = click.option(
    "--dataset",
    type=click.Choice(DATASET_NAMES, case_sensitive=False),
    default=None,
    help="Standard test set, in torchvision's layout under --data-root.",
)
labels = click.option(
    "--labels",
    default=None,
    metavar="|".join([*BUILTIN_LABELS, "FILE"]),
    help="Class names: a built-in set or a text file, one name a line (default: CIFAR-10 names for 10 classes, "
    "CIFAR-100 names for 100).",
)
download = click.option(
    "--download", is_flag=True, help="Fetch the official archive (md5-checked) if the test set is absent."
)


def data_root(help: str = DATA_ROOT_HELP) -> Decorator[Any]:
    """``--data-root DIR``: where the standard data sets are (torchvision's layout)."""
    return click.option("--data-root", type=path(), default=None, help=help)


def images(help: str) -> Decorator[Any]:
    """``--images DIR``: a folder of labelled 32x32 PNGs (``NAME_LABEL.png``)."""
    return click.option("--images", type=path(), default=None, help=help)


def limit(help: str = "Use only the first N images.") -> Decorator[Any]:
    """``--limit N``: the first N images only."""
    return click.option("--limit", type=click.IntRange(min=1), default=None, help=help)


# --- where and how it runs ------------------------------------------------------------------------------------

device = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=DEVICES[0],
    show_default=True,
    help="auto takes CUDA where PyTorch sees a GPU; cuda fails if any runtime would not really use it.",
)
runtime = click.option(
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
precision = click.option(
    "--precision",
    type=click.Choice(COMPUTE_PRECISIONS),
    default=COMPUTE_PRECISIONS[0],
    show_default=True,
    help="OpenVINO compute precision: f32 (exact) or bf16 (faster where the CPU has bfloat16 instructions; "
    "lossy, held to its own tolerance and labelled).",
)
one_runtime = click.option(
    "--runtime",
    type=click.Choice([*RUNTIMES, *RUNTIME_ALIASES]),
    default=DEFAULT_RUNTIME,
    show_default=True,
    help="Runtime for ONNX and .ort files (checkpoints, packed and .bwn files run on the PyTorch reference).",
)
threads = click.option(
    "--threads",
    type=Threads(),
    default=0,
    show_default=True,
    help=f"Intra-op threads per runtime (0: one per core; at most {THREADS_PER_CPU} per CPU).",
)


def batch_size(default: int, help: str) -> Decorator[Any]:
    """``--batch-size N``: 1..``runtimes.MAX_BATCH_SIZE`` images per call (each command its own default)."""
    return click.option(
        "--batch-size",
        type=click.IntRange(1, MAX_BATCH_SIZE),
        default=default,
        show_default=True,
        help=f"{help} (at most {MAX_BATCH_SIZE}).",
    )
