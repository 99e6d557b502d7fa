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
    from binexport._fileio import check_input

    p = check_input(path)
    with open(p, "rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; the CIFAR test files are about 30 MB")
    return raw


def read_batch(path: Path) -> Any:
    """One CIFAR pickle file, read within the size bound and unpickled safely (not yet checked: see parse_object)."""
    return _safe_unpickle(_read_bounded(path), str(path))


def parse_batch(raw: bytes, spec: CifarSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and int64 labels from one CIFAR pickle, every field checked."""
    return parse_object(_safe_unpickle(raw, where), spec, where)


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


#: The real CIFAR test files are 31 MB (CIFAR-100) and 30 MB (CIFAR-10); anything far larger is not one.
MAX_FILE_BYTES = 256 * 2**20


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` in a pickle: only ``_reconstruct`` may use it; calling it would allocate
    any declared shape (``ndarray((100000, 3072))`` from a 170-byte file), so calling it is refused."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise _Refused("calling numpy.ndarray directly (it allocates any declared shape) is not allowed")


_NDARRAY = _NdarrayClass()


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` for ndarray only: it makes an empty array that BUILD then fills from bytes in
    the file (numpy checks their length), so nothing is allocated beyond what the file holds."""
    from binexport.data._npcompat import multiarray

    if cls is not _NDARRAY:
        raise _Refused("_reconstruct of anything but numpy.ndarray is not allowed")
    if shape not in ((0,), [0], 0):
        raise _Refused(f"_reconstruct with shape {str(shape)[:40]} is not allowed (numpy pickles use (0,))")
    return multiarray._reconstruct(np.ndarray, (0,), typecode)  # type: ignore[return-value]  # numpy private, no stub


def _dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` for plain numeric types; object dtypes would let a pickle put objects in an array."""
    dt = np.dtype(*args)
    if dt.hasobject or dt.itemsize > 64:
        raise _Refused(f"dtype {dt} is not allowed in CIFAR data")
    return dt


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's protocol-5 ``_frombuffer``: a view of bytes in the file, so bounded by it."""
    from binexport.data._npcompat import numeric

    if not isinstance(buf, (bytes, bytearray, memoryview)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused("_frombuffer is allowed for plain bytes and numeric dtypes only")
    return numeric._frombuffer(buf, dtype, shape, order)  # type: ignore[attr-defined]  # numpy private, no stub


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode(str, 'latin1')``, as Python 3 pickles bytes at protocols 0-2 (CIFAR files re-saved by
    Python 3 hold their image bytes this way). Safe to allow in exactly this form: a pure function of a string
    already in the file, giving bytes of the same length; no I/O, no other codec (codecs can be arbitrary
    code, e.g. a registered one), no other argument types."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(
            f"_codecs.encode is allowed only as (str, 'latin1'), got ({type(text).__name__}, {str(encoding)[:20]!r})"
        )
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR pickle needs: numpy's array and dtype reconstruction, guarded (see each)."""
    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1,
    }
    for pkg in ("numpy.core", "numpy._core"):  # Python 2 / numpy 1 files name numpy.core
        out[(pkg + ".multiarray", "_reconstruct")] = _reconstruct
        out[(pkg + ".numeric", "_frombuffer")] = _frombuffer
    return out


class _Refused(pickle.UnpicklingError):
    """A global or persistent id that a CIFAR file has no business asking for."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise _Refused(f"global {str(module)[:60]}.{str(name)[:60]} is not allowed")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


def _safe_unpickle(raw: bytes, where: str) -> Any:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _Refused as e:
        raise InputError(
            f"{where}: refused: the pickle asks for code, not data ({e}); a CIFAR test file holds only "
            "numpy arrays and lists, so this file is not one (or was tampered with)"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
        LookupError,
    ) as e:
        # only the unpickler and the guarded constructors above run here, on a stranger's bytes
        raise InputError(
            f"{where}: not a readable CIFAR pickle, truncated or corrupt ({type(e).__name__}: "
            f"{str(e)[:120]}); delete it and fetch it again (--download)"
        ) from None
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
            raise InputError(
                f"{url}: md5 {digest} does not match the published {spec.md5}; the download is "
                "corrupt or not the official archive, and nothing was kept. Try again, or put the "
                f"archive's {spec.folder}/{spec.member} under --data-root yourself"
            )
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
        raise InputError(
            f"{url}: download failed ({why}); check the network, or set BINEXPORT_DATA_URL to a mirror"
        ) from None
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
