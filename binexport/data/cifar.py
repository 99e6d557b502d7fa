"""The CIFAR test sets in torchvision's on-disk layout, read without trusting their pickles.

The files are Python pickles made by strangers: a plain ``pickle.load`` would run
whatever code they name. They are read with an unpickler that builds numpy
arrays and plain containers only. ``download`` fetches the official archive,
checks its published md5 before anything is extracted, and places the one file
verify needs atomically.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from binexport._fileio import write_atomic
from binexport.errors import InputError

#: Where the archives live; ``$BINEXPORT_DATA_URL`` overrides it (mirrors, tests).
BASE_URL = "https://www.cs.toronto.edu/~kriz"
#: Data root used when none is given and ``$BINEXPORT_DATA`` is unset.
DEFAULT_ROOT = Path("~/.cache/binexport/data")
_MAX_ARCHIVE = 512 * 2**20  # the real archives are 163 MB (CIFAR-10) and 161 MB (CIFAR-100)


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
    "CIFAR100": CifarSpec("CIFAR100", "cifar-100-python", "test", "fine_labels", 100,
                        "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
    "CIFAR10": CifarSpec("CIFAR10", "cifar-10-batches-py", "test_batch", "labels", 10,
                       "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
}


@dataclass
class Dataset:
    """Decoded test images (uint8 NHWC) and their labels."""

    name: str
    images: np.ndarray
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


def load_cifar(name: str, root: str | Path | None = None, *, download: bool = False,
                  base_url: str | None = None) -> Dataset:
    """The standard test set ``name`` from ``root`` (fetched first if asked and absent)."""
    spec = cifar_spec(name)
    root = Path(root).expanduser() if root is not None else default_root()
    path = spec.path(root)
    if not path.is_file():
        if not download:
            raise InputError(f"{path}: {spec.name} test set not found (expected torchvision's layout under the data "
                             f"root {root}); pass --download to fetch the official archive, or --data-root DIR "
                             "where it already is")
        download_cifar(spec.name, root, base_url=base_url)
    images, labels = parse_batch(path.read_bytes(), spec, str(path))
    return Dataset(spec.name, images, labels, spec.num_classes, str(path))


def parse_batch(raw: bytes, spec: CifarSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and int64 labels from one CIFAR pickle, every field checked."""
    obj = _safe_unpickle(raw, where)
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a pickled dict (CIFAR batch), found {type(obj).__name__}")
    d = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    data, labels = d.get("data"), d.get(spec.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InputError(f"{where}: 'data' must be uint8 of shape (N, 3072) (32x32 RGB, planar), found {found}; "
                         f"is this the {spec.name} test file?")
    if isinstance(labels, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        labels = np.asarray(labels, dtype=np.int64)
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InputError(f"{where}: {spec.label_key!r} must be a list of integers, found {type(labels).__name__}; "
                         f"is this the {spec.name} test file?")
    if len(labels) != len(data):
        raise InputError(f"{where}: {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise InputError(f"{where}: labels must lie in 0..{spec.num_classes - 1}, found {labels.min()}..{labels.max()}")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR pickle needs: numpy's array and dtype reconstruction."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for pkg in ("numpy.core", "numpy._core"):  # Python 2 / numpy 1 files name numpy.core
        out[(pkg + ".multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(pkg + ".numeric", "_frombuffer")] = numeric._frombuffer
    return out


class _Refused(pickle.UnpicklingError):
    """A global or persistent id that a CIFAR file has no business asking for."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise _Refused(f"global {module}.{name} is not allowed")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


def _safe_unpickle(raw: bytes, where: str) -> Any:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as e:
        raise InputError(f"{where}: refused: the pickle asks for code, not data ({e}); a CIFAR test file holds only "
                         "numpy arrays and lists, so this file is not one (or was tampered with)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as e:
        raise InputError(f"{where}: not a readable CIFAR pickle, truncated or corrupt ({type(e).__name__}: "
                         f"{str(e)[:120]}); delete it and fetch it again (--download)") from None
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise InputError(f"{where}: object arrays are not CIFAR data")
    return obj


def download_cifar(name: str, root: str | Path, *, base_url: str | None = None, timeout: float = 60) -> Path:
    """Fetch the official archive, check its md5, then place only the test file, atomically.

    The archive goes to a temp file beside the data and is deleted afterwards;
    the one member needed is read from it, validated and written to a path of
    our choosing, so no name inside the archive ever reaches the filesystem.
    """
    spec = cifar_spec(name)
    root = Path(root).expanduser()
    base = (base_url or os.environ.get("BINEXPORT_DATA_URL") or BASE_URL).rstrip("/")
    url = f"{base}/{spec.archive}"
    if not url.startswith(("https://", "http://")):
        raise InputError(f"download URL {url!r}: expected http:// or https://")
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.archive}.", suffix=".part", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            digest = _fetch(url, f, timeout)
        if digest != spec.md5:
            raise InputError(f"{url}: md5 {digest} does not match the published {spec.md5}; the download is "
                             "corrupt or not the official archive, and nothing was kept. Try again, or put the "
                             f"archive's {spec.folder}/{spec.member} under --data-root yourself")
        member = f"{spec.folder}/{spec.member}"
        raw = _read_member(Path(tmp), member, url)
        parse_batch(raw, spec, f"{url}!{member}")  # refuse a bad file before it is placed
        dest = spec.path(root)
        dest.parent.mkdir(exist_ok=True)
        return write_atomic(dest, raw)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fetch(url: str, out: Any, timeout: float) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (scheme checked above)
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                size += len(chunk)
                if size > _MAX_ARCHIVE:
                    raise InputError(f"{url}: larger than {_MAX_ARCHIVE >> 20} MiB; not the CIFAR archive")
                md5.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        why = getattr(e, "reason", None) or e
        raise InputError(f"{url}: download failed ({why}); check the network, or set BINEXPORT_DATA_URL to a "
                         "mirror") from None
    return md5.hexdigest()


def _read_member(archive: Path, member: str, url: str) -> bytes:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            info = tar.getmember(member)
            f = tar.extractfile(info) if info.isfile() else None
            if f is None:
                raise KeyError(member)
            return f.read()
    except KeyError:
        raise InputError(f"{url}: the archive has no file {member}") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(f"{url}: not a readable .tar.gz ({e})") from None
