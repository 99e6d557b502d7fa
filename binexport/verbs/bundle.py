"""``binexport bundle``: a folder ready to upload to a Hugging Face-style model repository, every number measured.

It calls the library's public verbs (``pack``, ``export_onnx``, ``verify``, ``bench``: no verb module is
imported), writing into a temporary folder beside the destination: ``model.safetensors`` and ``model.bwn``,
the ONNX variants under ``onnx/`` (1-bit + int8 for a 1-bit model, float32 + float16 for a full-precision
one) with their ``.ort`` phone files and operator configs, then ``verify`` runs every file against the source
on the user's data. Only when every row passed are ``config.json``, ``verify.json`` (``bench.json``), the model
card ``README.md`` (:mod:`binexport.modelcard`) and ``SHA256SUMS`` written and the folder renamed into
place; any failure removes the temporary folder, so an interrupted bundle leaves nothing half-made.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import binexport  # the other verbs, through the public API as any user calls them (never a verb module)
from binexport.errors import CheckError, InputError
from binexport.report import Report

#: What ``--license`` defaults to, and the card then warns.
UNKNOWN_LICENSE = "unknown"
#: int8 calibration images for the bundle (the to-onnx default).
CALIBRATION_SIZE = 256


@dataclass
class BundleFile:
    """One file of the bundle: its size, sha256, and what verify measured for it (model files only)."""

    path: str
    bytes: int
    sha256: str
    role: str
    top1: float | None = None
    agreement: float | None = None
    passed: bool | None = None


@dataclass
class BundleReport(Report):
    """What ``bundle`` wrote, and the command that publishes it."""

    output: str
    source: str
    source_sha256: str
    architecture: str
    num_classes: int
    binarized: bool
    license: str
    files: list[BundleFile]
    data: str
    num_images: int
    upload_command: str
    warnings: list[str] = field(default_factory=list)
    version: str = ""


def bundle(
    model: str | Path,
    out: str | Path,
    *,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    images: str | Path | None = None,
    calibrate: str | None = None,
    calibration_size: int = CALIBRATION_SIZE,
    limit: int | None = None,
    labels: str | Path | None = None,
    license: str | None = None,
    bench: bool = False,
    bench_seconds: float = 2.0,
    force: bool = False,
    binarized: bool | None = None,
    repo_id: str = "USER/MODEL",
) -> BundleReport:
    """Build the Hub-ready folder ``out`` from ``model`` and the user's evaluation data.

    Args:
        model: any model file binexport reads (checkpoint, packed, ``.bwn``, safetensors, ``.mat``), or a run folder.
        out: the folder to create (refused if it exists, unless ``force``).
        dataset, data_root, images: the evaluation data, as ``verify`` takes them.
        calibrate: training images for the int8 variant (1-bit models), as ``to-onnx --calibrate``; without it
            the int8 file is left out (with a warning).
        calibration_size: int8 calibration images.
        limit: verify on the first N images only.
        labels: ``CIFAR10``, ``CIFAR100``, ``SVHN`` or a file of class names (default from the class count).
        license: the licence for the card (default ``unknown``, with a warning).
        bench: also benchmark every file (``bench.json``; the CPU goes on the card).
        bench_seconds: timing budget per file with ``bench``.
        force: replace an existing ``out``.
        binarized: override ``log.txt`` about ``--binarize``.
        repo_id: the Hub repository named in the printed ``hf upload`` command.

    Returns:
        A :class:`BundleReport`.

    Raises:
        InputError: bad input (missing data, an existing ``out``, a bad ``labels``), before anything is left.
        CheckError: a file does not classify like the source; the temporary folder is removed.

    Example:
        >>> r = binexport.bundle("model.pth.tar", "hub/", dataset="CIFAR100", calibrate="CIFAR100")  # doctest: +SKIP
        >>> r.upload_command                                                                            # doctest: +SKIP
        'hf upload USER/MODEL hub/ .'
    """
    from binexport import formats
    from binexport.data.labels import default_labels, load_labels
    from binexport.fileio import sha256_file

    dest = Path(out)
    if os.path.lexists(dest) and not (force and dest.is_dir() and not dest.is_symlink()):
        raise InputError(f"{dest}: already exists; pass --force to replace it (a folder), or choose another -o")
    if not dest.parent.is_dir():
        raise InputError(f"{dest.parent}: no such folder for the bundle")
    if (dataset is None) == (images is None):
        raise InputError("give exactly one of --dataset CIFAR100|CIFAR10 (with --data-root) or --images DIR")
    src = formats.resolve(model)
    m = formats.load(src, binarized=binarized)
    names, labels_origin = load_labels(labels, m.arch.num_classes) if labels else default_labels(m.arch.num_classes)
    warnings: list[str] = []
    lic = license or UNKNOWN_LICENSE
    if license is None:
        warnings.append("no --license given: the card says 'unknown'; set the model's licence before publishing")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        roles: dict[str, str] = {}
        for fmt, name in (("safetensors", "model.safetensors"), ("bwn", "model.bwn")):
            binexport.pack(src, tmp / name, format=fmt, binarized=binarized)
            roles[name] = f"weights ({fmt})"
        (tmp / "onnx").mkdir()
        variants = [("model.onnx", "1-bit" if m.binarized else "float32")]
        if m.binarized and calibrate is not None:
            variants.append(("model_int8.onnx", "int8"))
        elif m.binarized:
            warnings.append("no --calibrate given: onnx/model_int8.onnx (the fast CPU file) is left out")
        else:
            variants.append(("model_fp16.onnx", "float16"))
        for name, weights in variants:
            extra: dict[str, Any] = {}
            if weights == "int8":
                extra = {"calibrate": calibrate, "data_root": data_root, "calibration_size": calibration_size}
            binexport.export_onnx(
                src, tmp / "onnx" / name, weights=weights, binarized=binarized, ort_format=True, **extra
            )
            stem = name[: -len(".onnx")]
            roles[f"onnx/{name}"] = f"ONNX, {weights} weights"
            roles[f"onnx/{stem}.ort"] = f"ONNX Runtime Mobile (.ort), {weights} weights"
            roles[f"onnx/{stem}.required_operators_and_types.config"] = "operators for a reduced ONNX Runtime build"
        model_files = [n for n in roles if not n.endswith(".config")]
        report = binexport.verify(
            [src, *(tmp / n for n in model_files)],
            dataset=dataset,
            data_root=data_root,
            images=images,
            reference=src,
            limit=limit,
            binarized=binarized,
        )
        if not report.passed:
            raise CheckError("a bundled file does not classify like the source; nothing written", report.failures)
        (tmp / "verify.json").write_text(_bundle_paths(report.to_dict(), tmp))
        bench_report = None
        if bench:
            bench_report = binexport.bench([tmp / n for n in model_files], seconds=bench_seconds, device="cpu")
            (tmp / "bench.json").write_text(_bundle_paths(bench_report.to_dict(), tmp))
        rows = {Path(r.path).resolve(): r for r in report.artifacts}
        config = _config(m, names, labels_origin, roles)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        files = []
        for name in sorted(roles) + ["config.json", "verify.json"] + (["bench.json"] if bench else []):
            p = tmp / name
            r = rows.get(p.resolve())
            files.append(
                BundleFile(
                    name,
                    p.stat().st_size,
                    sha256_file(p),
                    roles.get(name, "metadata"),
                    None if r is None else r.top1,
                    None if r is None else r.agreement,
                    None if r is None else r.passed,
                )
            )
        from binexport.modelcard import model_card

        card = model_card(m, src, sha256_file(src), lic, config, files, report, bench_report, repo_id)
        (tmp / "README.md").write_text(card)
        files.append(
            BundleFile("README.md", (tmp / "README.md").stat().st_size, sha256_file(tmp / "README.md"), "card")
        )
        sums = "".join(f"{f.sha256}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))
        (tmp / "SHA256SUMS").write_text(sums)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleReport(
        output=str(dest),
        source=str(src),
        source_sha256=m.source.sha256,
        architecture=m.arch.name,
        num_classes=m.arch.num_classes,
        binarized=m.binarized,
        license=lic,
        files=files,
        data=report.data if report.data != "images" else str(report.data_source),
        num_images=report.num_images,
        upload_command=f"hf upload {repo_id} {dest} .",
        warnings=warnings,
        version=binexport.__version__,
    )


def _bundle_paths(d: dict[str, Any], tmp: Path) -> str:
    """``d`` as indented JSON with the temporary folder's paths made relative to the bundle (``onnx/model.onnx``):
    the published ``verify.json`` names the files beside it, not a folder that no longer exists."""
    prefix = json.dumps(str(tmp) + os.sep)[1:-1]  # as it appears inside a JSON string
    return json.dumps(d, indent=2, default=str).replace(prefix, "") + "\n"


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Rename the finished folder into place; an old ``dest`` (``--force``) is moved aside first, then removed."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _config(m: Any, names: tuple[str, ...], labels_origin: str, roles: dict[str, str]) -> dict[str, Any]:
    """``config.json``: what a loader needs (timm ``pretrained_cfg`` style keys) and which file is which."""
    from binexport.model import input_normalization
    from binexport.runtimes import model_input_kind

    mean, std = input_normalization(m.arch)
    return {
        "architecture": m.arch.name,
        "library_name": "binexport",
        "binarized": m.binarized,
        "num_classes": m.arch.num_classes,
        "labels": list(names),
        "id2label": {str(i): n for i, n in enumerate(names)},
        "labels_source": labels_origin,
        "input_size": [3, 32, 32],
        "mean": list(mean),
        "std": list(std),
        "normalization": m.arch.normalization or "spec",
        "input_kind": model_input_kind(m.arch),
        "input_bn": bool(m.arch.input_bn),
        "pretrained_cfg": {
            "input_size": [3, 32, 32],
            "mean": list(mean),
            "std": list(std),
            "num_classes": m.arch.num_classes,
            "interpolation": "box (area) down, bilinear up (binexport predict)",
        },
        "files": roles,
    }
