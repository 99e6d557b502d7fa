"""The whole job on real weights, with nothing to download.

By default: M. D. McDonnell's own 1-bit WRN-20-10 for CIFAR-10 (his MATLAB ``.mat`` file, MIT licence,
shipped in ``binexport/data/demo``) and the first 200 images of the real CIFAR-10 test set (Krizhevsky
2009, shipped beside it). It inspects the model, packs it to ``.bwn``, exports 1-bit ONNX and int8 ONNX
(calibrated on 192 of the 256 real CIFAR-10 *training* images shipped beside the test images, and validated on
the other 64), verifies every artifact against the model and ends with ``bench``, so a newcomer sees a real accuracy from every artifact.

``synthetic=True`` keeps the older run: a 204.5 MiB WRN-20-10 training checkpoint in the training code's
exact layout (random weights), packed to the published 3.5 MB layout and to ``.bwn``, with int8 calibrated
on a synthetic training split. ``full_precision=True`` is the synthetic run without ``--binarize``: ``.bwn``
float32 and float16, ONNX float32 and verify, for the other row of the seed's table. ``checkpoint=`` runs the
same steps on the user's own file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import binexport  # the other verbs, through the public API as any user calls them (never a verb module)
from binexport.report import Report

#: The shipped demo: McDonnell's MATLAB CIFAR-10 model and 200 CIFAR-10 test images in torchvision's layout.
DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
DEMO_MODEL = DEMO_DIR / "TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat"
#: int8's training images: the first 256 images of the real CIFAR-10 training batch 4 (never test images).
DEMO_CALIBRATION = DEMO_DIR / "cifar-10-batches-py" / "data_batch_4"
DEMO_TRAINING_IMAGES = 256
#: The first 192 calibrate int8; the other 64 are held out to validate the export on (real images no
#: calibration saw, enough for an agreement percentage: ``check.MIN_AGREEMENT_IMAGES``).
DEMO_CALIBRATION_COUNT = 192
DEMO_HELDOUT_COUNT = DEMO_TRAINING_IMAGES - DEMO_CALIBRATION_COUNT


@dataclass
class DemoReport(Report):
    """The reports of each step, in order, keyed by step name, and notes on what was left out and why."""

    folder: str
    checkpoint: str
    synthetic_checkpoint: bool
    data: str
    steps: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every field, with each step as its own report's ``to_dict()`` (its version and extra keys kept)."""
        return {**super().to_dict(), "steps": {k: v.to_dict() for k, v in self.steps.items()}}


def run_demo(
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    synthetic: bool = False,
    width: float = 10,
    images: str | Path | None = None,
    n_images: int = 200,
    calibrate: str | Path | None = None,
    data_root: str | Path | None = None,
    bench_seconds: float = 4.0,
    limit: int | None = None,
    full_precision: bool = False,
    binarized: bool | None = None,
    on_step: Callable[[str, Any], None] | None = None,
) -> DemoReport:
    """Run every capability once, ending with ``bench``; ``on_step(name, report)`` sees each report as it is made.

    Args:
        out_dir: folder for the demo's files.
        checkpoint: the user's model file instead of the shipped one (any format binexport reads).
        synthetic: the synthetic WRN-20 training checkpoint (``width``) and synthetic images instead.
        width: width of the synthetic WRN-20.
        images: a folder of labelled PNGs to verify on instead of the shipped CIFAR-10 test images.
        n_images: synthetic test images (``synthetic`` only).
        calibrate: training images for int8 (as ``to-onnx --calibrate``).
        data_root: a torchvision data root; for the shipped model, its CIFAR-10 training batches calibrate int8
            instead of the 256 shipped training images.
        bench_seconds: timing budget per artifact of the closing benchmark (0 skips it).
        limit: verify on the first N images only.
        full_precision: the full-precision steps (.bwn float32 and float16, ONNX float32, verify): on
            ``checkpoint``, else on a synthetic checkpoint trained without ``--binarize``.
        binarized: override ``log.txt`` about ``--binarize`` for ``checkpoint`` (as every verb's option).
        on_step: called with each step's name and report.

    Returns:
        A :class:`DemoReport` holding each step's report.

    Raises:
        InputError: a bad ``checkpoint`` or ``images``; CheckError: a step's check failed.

    Example:
        >>> run_demo("binexport-demo").steps["verify"].passed      # doctest: +SKIP
        True
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    synthetic = synthetic or (full_precision and checkpoint is None)
    report = DemoReport(str(out), "", synthetic, "")

    def step(name: str, r: Any) -> Any:
        report.steps[name] = r
        if on_step is not None:
            on_step(name, r)
        return r

    test: dict[str, Any] = {"images": images} if images is not None else {}
    if synthetic:
        checkpoint, calibrate, data_root, test = _synthetic(
            out, width, n_images, images, calibrate, data_root, report, binarize=not full_precision
        )
    elif checkpoint is None:
        checkpoint = DEMO_MODEL
        calibrate, data_root = _demo_calibration(calibrate, data_root, report)
        if images is None:
            test = {"dataset": "CIFAR10", "data_root": DEMO_DIR}
            report.data = "the first 200 images of the CIFAR-10 test set (Krizhevsky 2009), shipped with binexport"
    elif images is None:  # the user's model on synthetic images: agreement means something, accuracy doesn't
        test = _synthetic_test(out, n_images, np.random.default_rng(0), report)
    ckpt = Path(checkpoint)
    report.checkpoint = str(ckpt)
    report.data = report.data or str(images)

    info = step("inspect", binexport.inspect(ckpt, binarized=binarized))
    if full_precision:  # the other row of the seed's table: lossless and half-precision .bwn, float32 ONNX
        step("pack-bwn", binexport.pack(ckpt, out / "model.bwn", format="bwn", force=True, binarized=binarized))
        step(
            "pack-bwn-float16",
            binexport.pack(
                ckpt, out / "model.float16.bwn", format="bwn", weights="float16", force=True, binarized=binarized
            ),
        )
        step(
            "to-onnx",
            binexport.export_onnx(
                ckpt, out / "model.onnx", weights="float32", force=True, images=images, binarized=binarized
            ),
        )
        artifacts = [report.steps[s].output for s in ("pack-bwn", "pack-bwn-float16", "to-onnx")]
        step("verify", binexport.verify(artifacts, reference=ckpt, limit=limit, binarized=binarized, **test))
        return report
    names = []
    if isinstance(info.output_sizes.get("packed"), int):  # the published layout holds the PyTorch port only
        step("pack", binexport.pack(ckpt, out / "model.packed.pth.tar", force=True, binarized=binarized))
        names.append("pack")
    step("pack-bwn", binexport.pack(ckpt, out / "model.bwn", format="bwn", force=True, binarized=binarized))
    step("to-onnx", binexport.export_onnx(ckpt, out / "model.onnx", force=True, images=images, binarized=binarized))
    names += ["pack-bwn", "to-onnx"]
    if calibrate is not None:
        step(
            "to-onnx-int8",
            binexport.export_onnx(
                ckpt,
                out / "model-int8.onnx",
                weights="int8",
                calibrate=calibrate,
                data_root=data_root,
                calibration_size=64 if synthetic else DEMO_CALIBRATION_COUNT,
                force=True,
                images=images,
                binarized=binarized,
            ),
        )
        names.append("to-onnx-int8")
    artifacts = [report.steps[s].output for s in names]
    # runtime "all": ONNX files also run on OpenVINO where its extra is installed (one more row each)
    step("verify", binexport.verify(artifacts, reference=ckpt, limit=limit, runtime="all", binarized=binarized, **test))
    if bench_seconds > 0:
        float32 = out / "model-float32.onnx"
        binexport.export_onnx(ckpt, float32, weights="float32", force=True, binarized=binarized)
        onnx = [a for a in artifacts if str(a).endswith(".onnx")]
        torch_files = [artifacts[0]] if synthetic or "pack" in names else []
        step("bench", binexport.bench([float32, *onnx, *torch_files], seconds=bench_seconds, runtime="all"))
    return report


def _demo_calibration(
    calibrate: str | Path | None, data_root: str | Path | None, report: DemoReport
) -> tuple[str | Path | None, str | Path | None]:
    """int8 calibrates on training images, never on the test images it is verified on.

    By default these are the 256 CIFAR-10 training images shipped in ``DEMO_DIR`` (``data_batch_4``: the first
    256 images of the real training batch 4): 192 calibrate, and the export is validated on the other 64, so a
    fresh machine sees the int8 row, judged on real images on every CPU; ``--calibrate`` or ``--data-root``
    (its ``cifar-10-batches-py/data_batch_*``) override them.
    """
    if calibrate is not None:
        return calibrate, data_root
    if data_root is None:
        report.notes.append(
            f"int8 calibrated on {DEMO_CALIBRATION_COUNT} CIFAR-10 training images shipped with binexport "
            f"({DEMO_CALIBRATION.name}) and validated on the other {DEMO_HELDOUT_COUNT}, never on the test "
            "images it is verified on"
        )
        return "CIFAR10", DEMO_DIR
    root = Path(data_root).expanduser()
    if any((root / "cifar-10-batches-py" / f"data_batch_{i}").is_file() for i in range(1, 6)):
        return "CIFAR10", root
    report.notes.append(
        f"int8 left out: no CIFAR-10 training batches under {root} to calibrate on. Pass "
        "--data-root DIR, where DIR/cifar-10-batches-py/data_batch_1..5 exist, or --calibrate "
        "FILE, or leave both out to calibrate on the shipped training images."
    )
    return None, None


def _synthetic(
    out: Path,
    width: float,
    n_images: int,
    images: str | Path | None,
    calibrate: str | Path | None,
    data_root: str | Path | None,
    report: DemoReport,
    binarize: bool = True,
) -> tuple[Path, Any, Any, dict[str, Any]]:
    """A synthetic training checkpoint, test set (CIFAR-100 layout) and training split (for int8) under ``out``."""
    from binexport.data.synth import make_arch, write_cifar_testset, write_training_run

    ckpt = write_training_run(out / "run", make_arch(20, width, 100), binarize=binarize)
    rng = np.random.default_rng(0)
    test: dict[str, Any] = {"images": images}
    if images is None:
        test = _synthetic_test(out, n_images, rng, report)
    if calibrate is None and binarize:
        n_train = 64 + 96
        write_cifar_testset(
            out / "data",
            rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 100, n_train),
            split="train",
        )
        calibrate, data_root = "CIFAR100", out / "data"
    return ckpt, calibrate, data_root, test


def _synthetic_test(out: Path, n_images: int, rng: np.random.Generator, report: DemoReport) -> dict[str, Any]:
    """``n_images`` random images in the CIFAR-100 test layout under ``out/data``; verify's arguments for them."""
    from binexport.data.synth import write_cifar_testset

    imgs = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    write_cifar_testset(out / "data", imgs, rng.integers(0, 100, n_images))
    report.data = f"{n_images} synthetic images in CIFAR-100 layout under {out / 'data'}"
    return {"dataset": "CIFAR100", "data_root": out / "data"}
