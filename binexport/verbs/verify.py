"""``binexport verify``: prove with numbers that each exported file classifies like the model trained.

The reference is the source checkpoint run by the PyTorch implementation of the
SPEC (binarised as trained). Every artifact runs on its natural runtime (packed,
``.bwn`` and checkpoints through PyTorch, ONNX through ONNX Runtime, and through
OpenVINO too with ``runtime=``: one row per runtime) over the same decoded
images, and is held to the tolerance of its weight encoding (or of a lossy
compute mode it ran, ``check.tolerance_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from binexport import check, formats
from binexport.errors import CheckError, InputError
from binexport.model import Model
from binexport.report import Report
from binexport.runtimes.artifact import Artifact
from binexport.runtimes.base import Progress
from binexport.runtimes.rows import open_reference, open_runs

#: The default batch size (the CLI's too).
DEFAULT_BATCH_SIZE = 256


@dataclass
class ArtifactResult:
    """One row of the report: how a file classified the images, next to the reference."""

    path: str
    role: str  # "reference" or "artifact"
    format: str
    weights: str
    runtime: str
    device: str
    provider: str
    input: str
    images: int
    top1: float
    top5: float
    top1_correct: int
    top5_correct: int
    agreement: float
    disagreements: int
    max_abs_logit_diff: float | None  # None where logits were not finite
    mean_abs_logit_diff: float | None
    images_per_s: float
    seconds: float
    tolerance: dict[str, float | None]
    passed: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    precision: str = "f32"  # the compute precision the runtime reports (OpenVINO bf16: lossy, own tolerance)
    kernels: str = ""  # which kernels ran, as the runtime names them ("" where it does not say)


@dataclass
class VerifyReport(Report):
    """Every row, the data it was measured on, and what failed (empty when everything passed)."""

    data: str
    data_source: str
    num_images: int
    num_classes: int
    device: str
    batch_size: int
    reference: ArtifactResult
    artifacts: list[ArtifactResult]
    failures: list[str]
    version: str
    runtimes: list[str] = field(default_factory=lambda: ["onnxruntime"])  # the runtime ids ONNX files ran on
    precision: str = "f32"  # asked of OpenVINO; each row says what really ran
    notes: list[str] = field(default_factory=list)  # about the run as a whole (a runtime ``all`` left out)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "passed": self.passed}

    def raise_for_failures(self) -> None:
        """A CheckError listing every failing row (the CLI calls it after rendering)."""
        if self.failures:
            bad = sum(not r.passed for r in self.artifacts)
            raise CheckError(
                f"{bad} of {len(self.artifacts)} artifacts do not classify like the reference", self.failures
            )


def verify(
    artifacts: list[str | Path],
    *,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    images: str | Path | None = None,
    reference: str | Path | None = None,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    limit: int | None = None,
    binarized: bool | None = None,
    runtime: str | Sequence[str] = "onnxruntime",
    precision: str = "f32",
    progress: Progress | None = None,
) -> VerifyReport:
    """Run the reference and every artifact over one test set; rows that miss their tolerance are failures.

    Args:
        artifacts: files to check: checkpoints, packed, ``.bwn`` (run by PyTorch) and ONNX (run by ONNX Runtime),
            or training run folders (their one checkpoint).
        dataset: ``CIFAR100``, ``CIFAR10`` or ``SVHN``: the standard test file under ``data_root`` (SVHN: the
            official ``test_32x32.mat``, streamed); or give ``images``.
        data_root: folder of torchvision's layout (default ``$BINEXPORT_DATA``, else ``~/.cache/binexport/data``).
        download: fetch the official archive (md5-checked) when the test file is absent.
        images: a folder of labelled 32x32 PNGs instead of ``dataset``.
        reference: the checkpoint the artifacts came from (default: the first artifact that is not ONNX).
        device: ``auto``, ``cuda`` or ``cpu``.
        batch_size: images per forward call, 1..:data:`binexport.runtimes.base.MAX_BATCH_SIZE`.
        limit: use only the first N images.
        binarized: override ``log.txt`` about ``--binarize`` for training checkpoints.
        runtime: ``onnxruntime`` (alias ``ort``), ``openvino`` or ``all`` (or several): each ONNX file gets one
            row per runtime (:func:`binexport.runtimes.plan.plan_runs`).
        precision: ``f32`` (exact) or ``bf16`` (OpenVINO's bfloat16 execution, held to
            ``check.TOLERANCES['bf16-compute']``).
        progress: ``progress(label, done, total)`` after every batch.

    Returns:
        A :class:`VerifyReport`; failing rows do not raise (``raise_for_failures`` turns them into a CheckError).

    Raises:
        InputError: bad input, before anything runs (missing test set, foreign file, ONNX without a reference).

    Example:
        >>> r = binexport.verify(["model.packed.pth.tar", "model.onnx"], dataset="CIFAR100")  # doctest: +SKIP
        >>> r.passed, [round(a.top1, 3) for a in r.artifacts]                                   # doctest: +SKIP
        (True, [0.8, 0.8])
    """
    from binexport import __version__
    from binexport.data import load_test_set
    from binexport.runtimes.base import check_batch_size, stream_logits
    from binexport.runtimes.plan import plan_runs, runtime_notes

    if not artifacts:
        raise InputError("verify needs at least one ARTIFACT file")
    if (dataset is None) == (images is None):
        raise InputError(
            "give exactly one of --dataset CIFAR100|CIFAR10|SVHN (a test set under --data-root) or "
            "--images DIR (a folder of labelled images)"
        )
    check_batch_size(batch_size)
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    plan = plan_runs(artifacts, runtime, precision, device)  # run folders resolved: their one checkpoint
    dev = plan.device
    arts = open_runs(plan.runs, binarized)
    reference = formats.resolve(reference) if reference is not None else None
    ref = open_reference(arts, reference, dev, binarized)
    ref_model = cast(Model, ref.model)  # open_reference returns loadable models only
    for a in arts:
        _check_compatible(a, ref, ref_model)
    ds = load_test_set(dataset=dataset, data_root=data_root, download=download, images=images)
    n_cls = ref_model.arch.num_classes
    if ds.num_classes is not None and ds.num_classes != n_cls:
        raise InputError(
            f"{ds.name} has {ds.num_classes} classes but the reference {ref.path} has {n_cls}; "
            f"use the dataset the model was trained on"
        )
    n = len(ds.labels) if limit is None else min(limit, len(ds.labels))
    labels = ds.labels[:n]
    if not len(labels):
        raise InputError(f"{ds.origin}: holds no images")
    if labels.max() >= n_cls:
        raise InputError(f"{ds.origin}: label {labels.max()} is out of range for a {n_cls}-class model")
    # every row runs over one stream of images, a chunk at a time (decoded and normalised once per chunk):
    # memory holds a chunk and the logits, whatever the number of images
    runs = [ref] + [a for a in arts if a.path.resolve() != ref.path.resolve()]
    names = [f"{ref.path.name} (reference)"] + [f"{a.path.name} ({a.session.name})" for a in runs[1:]]

    def failed(i: int, shape: tuple[int, ...], e: Exception) -> Exception:
        a = runs[i]
        return InputError(
            f"{a.path}: {a.session.name} failed on {a.session.input_kind} input of shape "
            f"{shape} ({str(e).strip()[:200]}); expected a binexport WRN export"
        )

    sessions = [a.session for a in runs]
    results = iter(stream_logits(sessions, ds.images, n, batch_size, progress, _runtime_errors(), failed, names))
    ref_logits, ref_secs = next(results)
    ref_row = _row(ref, "reference", ref_logits, ref_secs, ref_logits, labels)
    rows = []
    for a in arts:
        if a.path.resolve() == ref.path.resolve():
            rows.append(_row(a, "artifact", ref_logits, ref_secs, ref_logits, labels))
            continue
        logits, secs = next(results)
        rows.append(_row(a, "artifact", logits, secs, ref_logits, labels, ref_model.source.sha256))
    failures = [f"{r.path}{' (openvino)' if r.runtime == 'openvino' else ''}: {p}" for r in rows for p in r.problems]
    return VerifyReport(
        ds.name,
        ds.origin,
        len(labels),
        n_cls,
        dev,
        batch_size,
        ref_row,
        rows,
        failures,
        __version__,
        plan.runtimes,
        precision,
        notes=runtime_notes(runtime),
    )


def _runtime_errors() -> tuple[type[Exception], ...]:
    from binexport.runtimes.ort import ort_errors

    return ort_errors()


def _check_compatible(a: Artifact, ref: Artifact, r: Model) -> None:
    if a.model is not None and a.model.arch != r.arch:
        raise InputError(
            f"{a.path} is {a.model.arch.name} with {a.model.arch.num_classes} classes but the "
            f"reference {ref.path} is {r.arch.name} with {r.arch.num_classes}; pass the checkpoint "
            "it was made from as --reference"
        )
    if a.model is None:
        meta = a.metadata
        arch, classes = meta.get("binexport.architecture", r.arch.name), meta.get("binexport.num_classes")
        if arch != r.arch.name or (classes is not None and classes != str(r.arch.num_classes)):
            raise InputError(
                f"{a.path} is an export of {arch} with {classes} classes but the reference {ref.path} "
                f"is {r.arch.name} with {r.arch.num_classes}; pass the checkpoint it was exported from "
                "as --reference"
            )


def _row(
    a: Artifact, role: str, logits: np.ndarray, secs: float, ref: np.ndarray, labels: np.ndarray, ref_sha: str = ""
) -> ArtifactResult:
    weights, notes = a.weights, list(a.notes)
    if weights not in check.TOLERANCES:
        raise InputError(
            f"{a.path}: its weights are {weights!r}, for which no tolerance is defined; known: "
            f"{', '.join(check.WEIGHT_ENCODINGS)}"
        )
    compute = a.session.compute
    key = check.tolerance_key(weights, compute)
    if compute != "f32":
        notes.append(f"{a.session.name} computed in {compute}: lossy, held to the {key} tolerance")
    try:
        c = check.compare(logits, ref, key, labels=labels, what=a.path.name)
    except InputError as e:
        raise InputError(f"{a.path}: {e}") from None
    sha = a.metadata.get("binexport.source_sha256")
    if sha and ref_sha and sha != ref_sha:
        notes.append(f"exported from sha256 {sha[:12]}..., the reference file is {ref_sha[:12]}...")
    n = c.images
    c1, c5 = c.top1_correct or 0, c.top5_correct or 0
    return ArtifactResult(
        path=str(a.path),
        role=role,
        format=a.format,
        weights=weights,
        runtime=a.session.name,
        device=a.session.device,
        provider=a.session.provider,
        input=a.session.input_kind,
        images=n,
        top1=c1 / n if n else 0.0,
        top5=c5 / n if n else 0.0,
        top1_correct=c1,
        top5_correct=c5,
        agreement=c.agreement,
        disagreements=len(c.disagreements),
        max_abs_logit_diff=c.max_abs_logit_diff,
        mean_abs_logit_diff=c.mean_abs_logit_diff,
        images_per_s=n / secs if secs > 0 else 0.0,
        seconds=secs,
        tolerance=c.tolerance.to_dict(),
        passed=c.passed,
        problems=c.problems,
        notes=notes,
        precision=compute,
        kernels=a.session.kernels(),
    )
