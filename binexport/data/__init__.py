"""Where test and calibration images come from: CIFAR and SVHN test files, PNG folders, synthetic data.

Every source ends as a :class:`~binexport.data.cifar.Dataset` of uint8 NHWC
images and labels; :func:`normalize` turns images into the float32 NCHW input
the network was trained on. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binexport.data.cifar import DATASETS, Dataset, load_cifar
from binexport.data.png import list_labelled_folder
from binexport.errors import InputError
from binexport.model import CIFAR_MEAN, CIFAR_STD

#: Names accepted by ``--dataset``: the CIFAR test sets, and SVHN's official ``test_32x32.mat``.
DATASET_NAMES: tuple[str, ...] = (*DATASETS, "SVHN")

__all__ = ["DATASET_NAMES", "Dataset", "load_test_set", "normalize"]


def normalize(
    images: np.ndarray, mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD
) -> np.ndarray:
    """uint8 NHWC -> the float32 NCHW input the network was trained on: ``(pixel/255 - mean) / std``.

    ``mean``/``std``: the SPEC's CIFAR statistics unless a family evaluates with its own
    (:func:`binexport.model.input_normalization`).
    """
    x: np.ndarray = images.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_test_set(
    *,
    dataset: str | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    images: str | Path | None = None,
) -> Dataset:
    """A labelled test set: a standard CIFAR or SVHN test file (``dataset``) or a folder of PNGs (``images``).

    ``images`` of the result is sliced, never used whole: an array for CIFAR, a
    :class:`~binexport.data.png.PngImages` (decoded slice by slice) for a folder.

    Raises:
        InputError: neither or both given, the files are missing, or they are malformed.
    """
    if (dataset is None) == (images is None):
        raise InputError(
            "give exactly one of --dataset CIFAR100|CIFAR10|SVHN (a test set under --data-root) or "
            "--images DIR (a folder of labelled images)"
        )
    if dataset is not None and dataset.upper() == "SVHN":
        from binexport.data.svhn import load_svhn

        return load_svhn(data_root, download=download)
    if dataset is not None:
        return load_cifar(dataset, data_root, download=download)
    imgs, labels, _ = list_labelled_folder(images)  # type: ignore[arg-type]
    return Dataset("images", imgs, labels, None, str(images))  # decoded a slice at a time, as verify runs
