"""The CIFAR test sets in torchvision's on-disk layout, read without trusting their pickles.

The files are Python pickles made by strangers, read by :mod:`.safepickle` (numpy arrays and plain containers
only), within a size bound, and every field checked here. :func:`download_cifar` fetches the official
archive through :mod:`.download` (md5 checked before anything is extracted; the one file verify needs placed
atomically, after it parses). :class:`Dataset` is what every image source of ``binexport.data`` returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binexport.data import safepickle
from binexport.data.download import fetch_member
from binexport.errors import InputError
from binexport.fileio import check_input

#: Where the archives live; ``$BINEXPORT_DATA_URL`` overrides it (mirrors, tests).
BASE_URL = "https://www.cs.toronto.edu/~kriz"
#: Data root used when none is given and ``$BINEXPORT_DATA`` is unset.
DEFAULT_ROOT = Path("~/.cache/binexport/data")
#: The real CIFAR test files are 31 MB (CIFAR-100) and 30 MB (CIFAR-10); anything far larger is not one.
MAX_FILE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class CifarSpec:
    """Where one test set lives under a data root, and where it comes from."""

    name: str
    folder: str
    member: str
    label_key: str
    num_classes: int
    archive: str
    md5: str

    def path(self, root: Path) -> Path:
        return root / self.folder / self.member


DATASETS: dict[str, CifarSpec] = {
    "CIFAR100": CifarSpec(
        "CIFAR100",
        "cifar-100-python",
        "test",
        "fine_labels",
        100,
        "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
    "CIFAR10": CifarSpec(
        "CIFAR10",
        "cifar-10-batches-py",
        "test_batch",
        "labels",
        10,
        "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
}


@dataclass
class Dataset:
    """Test images (uint8 NHWC) and their labels.

    ``images`` is an array, or for a PNG folder a :class:`~binexport.data.png.PngImages` that decodes a slice
    when sliced (``images[a:b]`` is an array either way).
    """

    name: str
    images: Any
    labels: np.ndarray
    num_classes: int | None
    origin: str


def default_root() -> Path:
    """``$BINEXPORT_DATA`` if set, else ``~/.cache/binexport/data``."""
    env = os.environ.get("BINEXPORT_DATA")
    return Path(env).expanduser() if env else DEFAULT_ROOT.expanduser()


def cifar_spec(name: str) -> CifarSpec:
    spec = DATASETS.get(name.upper().replace("-", ""))
    if spec is None:
        raise InputError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    return spec


def load_cifar(
    name: str, root: str | Path | None = None, *, download: bool = False, base_url: str | None = None
) -> Dataset:
    """The standard test set ``name`` from ``root`` (fetched first if asked and absent)."""
    spec = cifar_spec(name)
    root = Path(root).expanduser() if root is not None else default_root()
    path = spec.path(root)
    if not path.is_file():
        if not download:
            raise InputError(
                f"{path}: {spec.name} test set not found (expected torchvision's layout under the data "
                f"root {root}); pass --download to fetch the official archive, or --data-root DIR "
                "where it already is"
            )
        download_cifar(spec.name, root, base_url=base_url)
    images, labels = parse_batch(_read_bounded(path), spec, str(path))
    return Dataset(spec.name, images, labels, spec.num_classes, str(path))


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, if it is a regular file of a plausible size (a FIFO or /dev/zero never ends)."""
    p = check_input(path)
    with open(p, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; the CIFAR test files are about 30 MB")
    return raw


def read_batch(path: Path) -> Any:
    """One CIFAR pickle file, read within the size bound and unpickled safely (not yet checked: see parse_object)."""
    return safepickle.unpickle(_read_bounded(path), str(path))


def parse_batch(raw: bytes, spec: CifarSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and int64 labels from one CIFAR pickle, every field checked."""
    return parse_object(safepickle.unpickle(raw, where), spec, where)


def parse_object(obj: Any, spec: CifarSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and int64 labels from an unpickled CIFAR batch, every field checked."""
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a pickled dict (CIFAR batch), found {type(obj).__name__}")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    data, labels = d.get("data"), d.get(spec.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InputError(
            f"{where}: 'data' must be uint8 of shape (N, 3072) (32x32 RGB, planar), found {found}; "
            f"is this the {spec.name} test file?"
        )
    if isinstance(labels, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        bad = next((v for v in labels if not 0 <= v < spec.num_classes), None)
        if bad is not None:  # before np.asarray: a label beyond int64 would raise OverflowError there
            raise InputError(f"{where}: labels must lie in 0..{spec.num_classes - 1}, found {str(bad)[:30]}")
        labels = np.asarray(labels, dtype=np.int64)
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputError(
            f"{where}: {spec.label_key!r} must be a list of integers, found {type(labels).__name__}; "
            f"is this the {spec.name} test file?"
        )
    if len(labels) != len(data):
        raise InputError(f"{where}: {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise InputError(f"{where}: labels must lie in 0..{spec.num_classes - 1}, found {labels.min()}..{labels.max()}")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def download_cifar(name: str, root: str | Path, *, base_url: str | None = None, timeout: float = 60) -> Path:
    """Fetch the official archive of ``name``, check its md5, then place only the test file, atomically.

    Args:
        name: ``CIFAR10`` or ``CIFAR100``.
        root: the data root; the file lands at torchvision's path under it.
        base_url: where the archives live (default ``$BINEXPORT_DATA_URL`` or :data:`BASE_URL`).
        timeout: seconds per network read.

    Returns:
        The test file's path.

    Raises:
        InputError: a bad URL, a failed download, a wrong md5, or an archive without a valid test file.
    """
    spec = cifar_spec(name)
    base = (base_url or os.environ.get("BINEXPORT_DATA_URL") or BASE_URL).rstrip("/")
    return fetch_member(
        f"{base}/{spec.archive}",
        f"{spec.folder}/{spec.member}",
        spec.md5,
        Path(root).expanduser(),
        spec.path(Path(root).expanduser()),
        check=lambda raw, where: parse_batch(raw, spec, where),
        what="the CIFAR archive",
        timeout=timeout,
    )
