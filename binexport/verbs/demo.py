"""The whole job on a built-in default, with nothing to download.

Makes a WRN-20-10 training checkpoint in the training code's exact layout
(random weights, log.txt saying it was binarised), or takes the user's, then
inspects it, packs it to the published layout and to .bwn, exports packed
ONNX, and verifies every artifact against the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class DemoReport:
    """The reports of each step, in order, keyed by step name."""

    folder: str
    checkpoint: str
    synthetic_checkpoint: bool
    data: str
    steps: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"schema_version": 1, "folder": self.folder, "checkpoint": self.checkpoint, "synthetic_checkpoint": self.synthetic_checkpoint,
                "data": self.data, "steps": {k: v.to_dict() for k, v in self.steps.items()}}


def run_demo(out_dir: str | Path, *, checkpoint: str | Path | None = None, width: float = 10,
             images: str | Path | None = None, n_images: int = 200, full_precision: bool = False,
             calibrate: str | Path | None = None, data_root: str | Path | None = None, bench_seconds: float = 4.0,
             on_step: Callable[[str, Any], None] | None = None) -> DemoReport:
    """Run every capability once, ending with ``bench``; ``on_step(name, report)`` sees each report as it is made.

    int8 is exported when there are training images to calibrate on: ``calibrate`` (as ``to-onnx``), or, for
    the synthetic checkpoint, a synthetic training split written beside the synthetic test set.
    ``bench_seconds=0`` skips the benchmark.

    The verbs are called through the public API (a verb never imports another).

    With ``full_precision`` (and no ``checkpoint``) the synthetic checkpoint is a full-precision one (log.txt
    says "binarize": false), and the steps are inspect, .bwn float32, .bwn float16, ONNX float32 and verify.

    Returns:
        A :class:`DemoReport` holding each step's report.

    Raises:
        InputError: a bad ``checkpoint`` or ``images``; CheckError: a step's check failed.
    """
    from binexport import export_onnx, inspect, pack, verify
    from binexport.data.synth import make_arch, write_cifar_testset, write_training_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    synthetic = checkpoint is None
    if checkpoint is None:
        checkpoint = write_training_run(out / "run", make_arch(20, width, 100), binarize=not full_precision)
    ckpt = Path(checkpoint)
    report = DemoReport(str(out), str(ckpt), synthetic, "")

    def step(name: str, r: Any) -> None:
        report.steps[name] = r
        if on_step is not None:
            on_step(name, r)

    rng = np.random.default_rng(0)
    if images is None:  # a synthetic test set, and a synthetic training split (for int8 calibration) beside it
        imgs = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
        write_cifar_testset(out / "data", imgs, rng.integers(0, 100, n_images))
        report.data = f"{n_images} synthetic images in CIFAR-100 layout under {out / 'data'}"
    if calibrate is None and synthetic and not full_precision:  # a user's model needs its own (--calibrate)
        n_train = 64 + 96
        write_cifar_testset(out / "data", rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
                            rng.integers(0, 100, n_train), split="train")
        calibrate, data_root = "CIFAR100", out / "data"

    step("inspect", inspect(ckpt))
    if full_precision:
        step("pack-bwn", pack(ckpt, out / "model.bwn", format="bwn", force=True))
        step("pack-bwn-float16", pack(ckpt, out / "model.float16.bwn", format="bwn", weights="float16", force=True))
        step("to-onnx", export_onnx(ckpt, out / "model.onnx", weights="float32", force=True, images=images))
        names = ["pack-bwn", "pack-bwn-float16", "to-onnx"]
    else:
        step("pack", pack(ckpt, out / "model.packed.pth.tar", force=True))
        step("pack-bwn", pack(ckpt, out / "model.bwn", format="bwn", force=True))
        step("to-onnx", export_onnx(ckpt, out / "model.onnx", force=True, images=images))
        names = ["pack", "pack-bwn", "to-onnx"]
    if calibrate is not None and not full_precision:
        step("to-onnx-int8", export_onnx(ckpt, out / "model-int8.onnx", weights="int8", calibrate=calibrate,
                                         data_root=data_root, calibration_size=64 if synthetic else 256,
                                         force=True, images=images))
        names.append("to-onnx-int8")
    artifacts = [report.steps[s].output for s in names]
    if images is not None:
        report.data = str(images)
        step("verify", verify(artifacts, images=images, reference=ckpt))
    else:
        step("verify", verify(artifacts, dataset="CIFAR100", data_root=out / "data", reference=ckpt))
    if bench_seconds > 0 and not full_precision:
        from binexport import bench

        float32 = out / "model-float32.onnx"
        export_onnx(ckpt, float32, weights="float32", force=True)
        step("bench", bench([float32, *artifacts[2:], artifacts[0]], seconds=bench_seconds))
    return report

