"""``binexport verify``: prove with numbers that each exported file classifies like the model trained.

The reference is the source checkpoint run by the PyTorch implementation of the
SPEC (binarised as trained). Every artifact runs on its natural runtime (packed,
``.bwn`` and checkpoints through PyTorch, ONNX through ONNX Runtime) over the
same decoded images, and is held to the tolerance of its weight encoding.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import numpy as np

from binexport import formats, tolerances
from binexport._fileio import check_input, read_head, write_atomic
from binexport.errors import CheckError, InputError
from binexport.model import Model

#: ``progress(label, images_done, images_total)``, called after every batch.
Progress = Callable[[str, int, int], None]

_ENCODING = {"packed-checkpoint": "packed", "bwn": "bwn", "training-checkpoint": "float32", "state-dict": "float32"}
_NCHW = "float32-nchw-normalized"
_NHWC = "uint8-nhwc"
_WARMUP = 2  # images run once, untimed, so one-off setup (CUDA context, allocator) is not counted as throughput


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
    tolerance: dict[str, float]
    passed: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
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

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def write_json(self, path: str | Path) -> Path:
        p = Path(path)
        if p.is_dir() or not p.parent.is_dir():
            raise InputError(f"{p}: --json needs a file name in an existing folder")
        return write_atomic(p, (json.dumps(self.to_dict(), indent=2) + "\n").encode())

    def raise_for_failures(self) -> None:
        """A CheckError listing every failing row (the CLI calls it after rendering)."""
        if self.failures:
            bad = sum(not r.passed for r in self.artifacts)
            raise CheckError(f"{bad} of {len(self.artifacts)} artifacts do not classify like the reference",
                             self.failures)


@dataclass
class _Artifact:
    path: Path
    model: Model | None = None
    ort: Any = None  # ort_runtime.OrtModel


def verify(artifacts: list[str | Path], *, dataset: str | None = None, data_root: str | Path | None = None,
           download: bool = False, images: str | Path | None = None, reference: str | Path | None = None,
           device: str = "auto", batch_size: int = 256, limit: int | None = None, binarized: bool | None = None,
           progress: Progress | None = None) -> VerifyReport:
    """Run the reference and every artifact over one test set; rows that miss their tolerance are failures.

    Bad input raises InputError before anything runs; failing rows do not raise
    (the report lists them in ``failures``; ``raise_for_failures`` turns them into a CheckError).
    """
    from binexport import __version__, data, ort_runtime
    from binexport.images import load_labelled_folder, normalize

    if not artifacts:
        raise InputError("verify needs at least one ARTIFACT file")
    if (dataset is None) == (images is None):
        raise InputError("give exactly one of --dataset CIFAR100|CIFAR10 (a test set under --data-root) or "
                         "--images DIR (a folder of labelled images)")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise InputError(f"--batch-size and --limit must be at least 1, got {batch_size} and {limit}")
    dev = ort_runtime.resolve_device(device)
    arts = [_open(Path(a), dev, binarized) for a in artifacts]
    ref = _reference(arts, reference, dev, binarized)
    ref_model = cast(Model, ref.model)  # _reference returns loadable models only
    for a in arts:
        _check_compatible(a, ref, ref_model)
    if dataset is not None:
        ds = data.load_cifar(dataset, data_root, download=download)
    else:
        imgs, labels, _ = load_labelled_folder(images)  # type: ignore[arg-type]
        ds = data.Dataset("images", imgs, labels, None, str(images))
    n_cls = ref_model.arch.num_classes
    if ds.num_classes is not None and ds.num_classes != n_cls:
        raise InputError(f"{ds.name} has {ds.num_classes} classes but the reference {ref.path} has {n_cls}; "
                         f"use the dataset the model was trained on")
    nhwc, labels = ds.images[:limit], ds.labels[:limit]
    if not len(labels):
        raise InputError(f"{ds.origin}: holds no images")
    if labels.max() >= n_cls:
        raise InputError(f"{ds.origin}: label {labels.max()} is out of range for a {n_cls}-class model")
    inputs = {_NCHW: normalize(nhwc), _NHWC: nhwc}  # decoded and normalised once, shared by every run
    with _exact_cuda(dev):
        ref_logits, ref_secs = _run(ref, inputs, dev, batch_size, _tick(progress, f"{ref.path.name} (reference)"))
        ref_row = _row(ref, "reference", ref_logits, ref_secs, ref_logits, labels, dev)
        rows = []
        for a in arts:
            if a.path.resolve() == ref.path.resolve():
                rows.append(_row(a, "artifact", ref_logits, ref_secs, ref_logits, labels, dev))
                continue
            logits, secs = _run(a, inputs, dev, batch_size, _tick(progress, a.path.name))
            rows.append(_row(a, "artifact", logits, secs, ref_logits, labels, dev, ref_model.source.sha256))
    failures = [f"{r.path}: {p}" for r in rows for p in r.problems]
    return VerifyReport(ds.name, ds.origin, len(labels), n_cls, dev, batch_size, ref_row, rows, failures, __version__)


def _open(p: Path, dev: str, binarized: bool | None) -> _Artifact:
    """A loadable model (checkpoint, packed, .bwn) or an ONNX Runtime session, told apart by content."""
    from binexport import api, ort_runtime

    check_input(p)
    fmt = formats.detect(read_head(p, 64))
    if fmt is None or fmt.NAME != "onnx":
        return _Artifact(p, model=api.load(p, binarized=binarized))
    try:
        return _Artifact(p, ort=ort_runtime.open_session(str(p), dev))
    except ort_runtime.ort_errors() as e:
        raise InputError(f"{p}: ONNX Runtime cannot open it ({str(e).strip()[:200]})") from None


def _reference(arts: list[_Artifact], reference: str | Path | None, dev: str, binarized: bool | None) -> _Artifact:
    if reference is not None:
        same = [a for a in arts if a.path.resolve() == Path(reference).resolve()]
        ref = same[0] if same else _open(Path(reference), dev, binarized)
        if ref.model is None:
            raise InputError(f"{reference}: the reference must be the checkpoint the artifacts were made from "
                             "(training checkpoint, packed checkpoint or .bwn), not an ONNX file")
        return ref
    for a in arts:
        if a.model is not None:
            return a
    raise InputError("every artifact is an ONNX file, so there is no reference to compare with; pass "
                     "--reference CKPT (the checkpoint they were exported from)")


def _check_compatible(a: _Artifact, ref: _Artifact, r: Model) -> None:
    if a.model is not None and a.model.arch != r.arch:
        raise InputError(f"{a.path} is {a.model.arch.name} with {a.model.arch.num_classes} classes but the "
                         f"reference {ref.path} is {r.arch.name} with {r.arch.num_classes}; pass the checkpoint "
                         "it was made from as --reference")
    if a.ort is not None:
        meta = a.ort.metadata
        arch, classes = meta.get("binexport.architecture", r.arch.name), meta.get("binexport.num_classes")
        if arch != r.arch.name or (classes is not None and classes != str(r.arch.num_classes)):
            raise InputError(f"{a.path} is an export of {arch} with {classes} classes but the reference {ref.path} "
                             f"is {r.arch.name} with {r.arch.num_classes}; pass the checkpoint it was exported from "
                             "as --reference")


def _tick(progress: Progress | None, label: str) -> Callable[[int, int], None]:
    return (lambda done, total: progress(label, done, total)) if progress else (lambda done, total: None)


def _run(a: _Artifact, inputs: dict[str, np.ndarray], dev: str, bs: int,
         tick: Callable[[int, int], None]) -> tuple[np.ndarray, float]:
    """Logits over every image, and the seconds the batches took (after a tiny untimed warm-up)."""
    if a.ort is not None:
        return _run_ort(a, inputs, bs, tick)
    import torch

    from binexport.torch_runtime import WRNReference

    net = WRNReference(cast(Model, a.model)).to(dev).eval()
    x = torch.from_numpy(inputs[_NCHW])
    if dev == "cuda" and x.numel() * 4 < torch.cuda.mem_get_info()[0] // 2:
        x = x.to(dev)  # the whole test set stays on the GPU: no per-batch copies
    n, outs = len(x), []
    with torch.inference_mode():
        net(x[:_WARMUP].to(dev))
        _sync(dev)
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            outs.append(net(x[i:i + bs].to(dev, non_blocking=True)))
            tick(min(i + bs, n), n)
        logits = torch.cat(outs).float().cpu().numpy()
    return logits, time.perf_counter() - t0


def _run_ort(a: _Artifact, inputs: dict[str, np.ndarray], bs: int,
             tick: Callable[[int, int], None]) -> tuple[np.ndarray, float]:
    from binexport.ort_runtime import ort_errors

    x = inputs[_NHWC] if a.ort.input_type == "tensor(uint8)" else inputs[_NCHW]
    try:
        a.ort.run_batch(a.ort.upload(x[:_WARMUP], _WARMUP)[0])
        batches = a.ort.upload(x, bs)
        t0 = time.perf_counter()
        outs, done = [], 0
        for b in batches:
            outs.append(a.ort.run_batch(b))
            done += len(outs[-1])
            tick(done, len(x))
        secs = time.perf_counter() - t0
    except ort_errors() as e:
        raise InputError(f"{a.path}: ONNX Runtime failed on {_NHWC if x.dtype == np.uint8 else _NCHW} input of "
                         f"shape {x.shape[1:]} ({str(e).strip()[:200]}); expected a binexport WRN export") from None
    return np.concatenate(outs), secs


def _sync(dev: str) -> None:
    if dev == "cuda":
        import torch

        torch.cuda.synchronize()


@contextmanager
def _exact_cuda(dev: str) -> Iterator[None]:
    """TF32 off while comparing on CUDA: it rounds float32 convs to 10 mantissa bits."""
    if dev != "cuda":
        yield
        return
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _describe(a: _Artifact, dev: str) -> tuple[str, str, str, str, str, list[str]]:
    """(format, weights, runtime, provider, input, notes) of an artifact."""
    if a.model is not None:
        weights = _ENCODING.get(a.model.source.format, "float32")
        if weights == "float32" and a.model.binarized:
            weights = "1-bit"  # latent float weights used as scale * sign, as at training time
        return a.model.source.format, weights, "torch", f"torch:{dev}", _NCHW, []
    meta, notes = a.ort.metadata, []
    weights = meta.get("binexport.weights")
    if weights is None:
        weights = "float32"
        notes.append("no binexport.weights metadata: held to the float32 tolerance")
    inp = meta.get("binexport.input") or (_NHWC if a.ort.input_type == "tensor(uint8)" else _NCHW)
    return "onnx", weights, "onnxruntime", a.ort.provider, inp, notes


def _row(a: _Artifact, role: str, logits: np.ndarray, secs: float, ref: np.ndarray, labels: np.ndarray, dev: str,
         ref_sha: str = "") -> ArtifactResult:
    fmt, weights, runtime, provider, inp, notes = _describe(a, dev)
    n, problems = len(labels), []
    if logits.shape != ref.shape:
        raise InputError(f"{a.path}: logits of shape {logits.shape}, the reference gives {ref.shape}; "
                         "is it an export of this reference?")
    max_tol = tolerances.MAX_ABS_LOGIT_DIFF.get(weights)
    min_agree = tolerances.MIN_AGREEMENT.get(weights)
    if max_tol is None or min_agree is None:
        max_tol, min_agree = 0.0, 1.0
        problems.append(f"no tolerance is defined for {weights!r} weights")
    k = min(5, logits.shape[1])
    top1 = logits.argmax(1)
    top5 = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    c1, c5 = int((top1 == labels).sum()), int((top5 == labels[:, None]).any(1).sum())
    differ = np.flatnonzero(top1 != ref.argmax(1))
    agree = 1.0 - len(differ) / n if n else 1.0
    diff = np.abs(logits.astype(np.float64) - ref)
    finite = bool(np.isfinite(logits).all())
    max_d = float(diff.max()) if finite and diff.size else (0.0 if finite else None)
    mean_d = float(diff.mean()) if finite and diff.size else (0.0 if finite else None)
    if not finite:
        problems.append("logits are not all finite (NaN or inf)")
    if agree < min_agree:
        first = ", ".join(f"#{i}" for i in differ[:5])
        problems.append(f"top-1 agreement {100 * agree:.2f} % < {100 * min_agree:g} % ({len(differ)} of {n} "
                        f"images differ, first {first})")
    if max_d is not None and max_d > max_tol:
        problems.append(f"max |logit diff| {max_d:.3g} > {max_tol:g} allowed for {weights} weights")
    sha = a.ort.metadata.get("binexport.source_sha256") if a.ort is not None else None
    if sha and ref_sha and sha != ref_sha:
        notes.append(f"exported from sha256 {sha[:12]}..., the reference file is {ref_sha[:12]}...")
    return ArtifactResult(
        path=str(a.path), role=role, format=fmt, weights=weights, runtime=runtime, device=dev, provider=provider,
        input=inp, images=n, top1=c1 / n if n else 0.0, top5=c5 / n if n else 0.0, top1_correct=c1, top5_correct=c5,
        agreement=agree, disagreements=len(differ), max_abs_logit_diff=max_d, mean_abs_logit_diff=mean_d,
        images_per_s=n / secs if secs > 0 else 0.0, seconds=secs,
        tolerance={"max_abs_logit_diff": max_tol, "min_agreement": min_agree}, passed=not problems,
        problems=problems, notes=notes)
