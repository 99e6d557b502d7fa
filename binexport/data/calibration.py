"""Training images for int8 calibration: never test images.

Static int8 quantization fixes each activation's range from a sample of
inputs. Calibrating on the test set would tune the model to the data it is
then measured on, so binexport takes calibration images only from a training
split: the training batches of torchvision's CIFAR layout
(``cifar-100-python/train``, ``cifar-10-batches-py/data_batch_*``, whichever
exist), one such file, or a folder of labelled PNGs the user vouches for.
A file whose ``batch_label`` says it is a testing batch is refused. A PNG folder is listed, and only the images
used (``limit``) are decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binexport.data import cifar
from binexport.data.cifar import Dataset
from binexport.errors import InputError

#: Dataset names accepted by ``--calibrate`` (besides a folder of PNGs or one training file).
SOURCES: tuple[str, ...] = tuple(cifar.DATASETS)
_TRAIN_MEMBERS = {"CIFAR100": ("train",), "CIFAR10": tuple(f"data_batch_{i}" for i in range(1, 6))}


def load_calibration(
    source: str | Path,
    data_root: str | Path | None = None,
    *,
    limit: int | None = None,
    not_from: str | Path | None = None,
) -> Dataset:
    """Training images to calibrate with, in the order of the files (first ``limit`` images).

    Args:
        source: ``CIFAR100`` / ``CIFAR10`` (training batches under ``data_root``), one CIFAR training file, or a
            folder of labelled 32x32 PNGs.
        data_root: the torchvision data root (default ``$BINEXPORT_DATA``, else ``~/.cache/binexport/data``).
        limit: take at most this many images.
        not_from: a folder the calibration images must not come from (the validation ``--images``).

    Returns:
        A :class:`Dataset` of uint8 NHWC images and labels.

    Raises:
        InputError: a test split, no training batch, an empty source, or a malformed file.
    """
    name = str(source).upper().replace("-", "")
    if name in _TRAIN_MEMBERS:
        spec = cifar.cifar_spec(name)
        root = Path(data_root).expanduser() if data_root is not None else cifar.default_root()
        files = [root / spec.folder / m for m in _TRAIN_MEMBERS[name] if (root / spec.folder / m).is_file()]
        if not files:
            wanted = ", ".join(f"{spec.folder}/{m}" for m in _TRAIN_MEMBERS[name][:2])
            raise InputError(
                f"{root}: no {spec.name} training batch found (expected {wanted}...); calibration "
                "uses training images only, never the test file: pass --data-root DIR where the "
                "training split is, or --calibrate FOLDER of labelled PNGs"
            )
        return _from_files(files, spec, limit, f"{root / spec.folder} (training split)")
    path = Path(source)
    if path.is_dir():
        if not_from is not None and path.resolve() == Path(not_from).resolve():
            raise InputError(
                f"{path}: the calibration images are the validation images; calibrate on training "
                "images and validate on others"
            )
        from binexport.data.png import list_labelled_folder

        # listed, then only the first ``limit`` decoded (as verify --images streams): a folder of 40,000 PNGs
        # calibrating on 256 decodes 256 + the held-out few, whatever the folder holds
        pngs, labels, _ = list_labelled_folder(path)
        return Dataset("images", pngs[:limit], labels[:limit], None, str(path))
    if path.is_file():
        obj = cifar.read_batch(path)
        return _from_files([path], _guess_spec(obj, path), limit, str(path), {path: obj})
    raise InputError(
        f"{source}: not a calibration source; expected {' or '.join(SOURCES)} (training batches under "
        "--data-root), a CIFAR training batch file, or a folder of labelled 32x32 PNGs"
    )


def _guess_spec(obj: object, path: Path) -> cifar.CifarSpec:
    keys = {(k.decode("latin1") if isinstance(k, bytes) else k) for k in obj} if isinstance(obj, dict) else set()
    if "fine_labels" in keys:
        return cifar.cifar_spec("CIFAR100")
    if "labels" in keys:
        return cifar.cifar_spec("CIFAR10")
    raise InputError(f"{path}: not a CIFAR batch (no 'fine_labels' or 'labels'); expected a training batch file")


def _from_files(
    files: list[Path], spec: cifar.CifarSpec, limit: int | None, origin: str, read: dict[Path, object] | None = None
) -> Dataset:
    """Images of the files in order, each read (within cifar's size bound) and unpickled once."""
    images, labels, have = [], [], 0
    for f in files:
        if limit is not None and have >= limit:
            break
        obj = (read or {}).get(f)
        obj = cifar.read_batch(f) if obj is None else obj
        _refuse_test_split(obj, f)
        imgs, labs = cifar.parse_object(obj, spec, str(f))
        images.append(imgs)
        labels.append(labs)
        have += len(labs)
    out = Dataset(spec.name, np.concatenate(images)[:limit], np.concatenate(labels)[:limit], spec.num_classes, origin)
    if not len(out.labels):
        raise InputError(f"{origin}: holds no images to calibrate with")
    return out


def _refuse_test_split(obj: object, path: Path) -> None:
    """A CIFAR file names its split in ``batch_label``; a testing batch must never calibrate."""
    label = obj.get(b"batch_label", obj.get("batch_label")) if isinstance(obj, dict) else None
    if isinstance(label, bytes):
        label = label.decode("latin1")
    if path.name in ("test", "test_batch") or (isinstance(label, str) and label.lower().startswith("testing")):
        raise InputError(
            f"{path}: this is a test split ({label or path.name}); int8 calibration uses training "
            "images only, so that the accuracy measured on the test set stays honest"
        )
