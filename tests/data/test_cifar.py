"""CIFAR test sets: torchvision's layout, a pickle reader that runs no code, md5-checked downloads."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from support.models import cifar_pickle, planar

from binexport.data import cifar as data
from binexport.errors import InputError


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes str/bytes as Python 2 ``str`` opcodes, as the real (cPickle, protocol 2) files have them."""

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        self.write(
            pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj
        )
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_pickle(obj: object) -> bytes:
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def images_and_labels(n: int = 12, classes: int = 100, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), [int(v) for v in rng.integers(0, classes, n)]


def test_reads_cifar100_in_torchvision_layout(tmp_path: Path) -> None:
    imgs, labels = images_and_labels()
    path = tmp_path / "cifar-100-python" / "test"
    path.parent.mkdir()
    path.write_bytes(cifar_pickle(imgs, labels))
    ds = data.load_cifar("CIFAR100", tmp_path)
    assert ds.images.dtype == np.uint8 and ds.images.shape == (12, 32, 32, 3) and ds.images.flags.c_contiguous
    assert np.array_equal(ds.images, imgs)
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == labels
    assert ds.num_classes == 100 and ds.origin == str(path)


def test_planar_rows_become_rgb_pixels() -> None:
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0], row[0, 1024 + 33], row[0, 2048 + 1023] = 10, 20, 30  # R at (0,0), G at (1,1), B at (31,31)
    raw = pickle.dumps({b"data": row, b"labels": [3]})
    images, labels = data.parse_batch(raw, data.DATASETS["CIFAR10"], "t")
    assert images[0, 0, 0].tolist() == [10, 0, 0]
    assert images[0, 1, 1].tolist() == [0, 20, 0]
    assert images[0, 31, 31].tolist() == [0, 0, 30]
    assert labels.tolist() == [3]


def test_reads_python2_pickles_like_the_real_files(tmp_path: Path) -> None:
    imgs, labels = images_and_labels(classes=10)
    raw = py2_pickle({b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": planar(imgs)})
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.parent.mkdir()
    path.write_bytes(raw)
    ds = data.load_cifar("cifar10", tmp_path)
    assert np.array_equal(ds.images, imgs) and ds.labels.tolist() == labels and ds.num_classes == 10


class _RunsCode:
    def __init__(self, call: object, arg: str) -> None:
        self.call, self.arg = call, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.call, (self.arg,)


@pytest.mark.parametrize("call", ["os.system", "builtins.exec"])
def test_refuses_a_pickle_that_would_run_code(tmp_path: Path, call: str) -> None:
    marker = tmp_path / "pwned"
    code = f"touch {marker}" if call == "os.system" else f"open({str(marker)!r}, 'w').close()"
    fn = os.system if call == "os.system" else exec
    path = tmp_path / "cifar-100-python" / "test"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({b"data": _RunsCode(fn, code), b"fine_labels": [1]}))
    with pytest.raises(InputError, match="refused.*not allowed"):
        data.load_cifar("CIFAR100", tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ({b"data": np.zeros((2, 3071), np.uint8), b"fine_labels": [0, 1]}, "uint8 of shape"),
        ({b"data": np.zeros((2, 3072), np.float32), b"fine_labels": [0, 1]}, "uint8 of shape"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100]}, "labels must lie in 0..99"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, "list of integers"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_refuses_files_that_are_not_the_test_set(obj: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        data.parse_batch(pickle.dumps(obj), data.DATASETS["CIFAR100"], "f")


def test_refuses_a_truncated_pickle() -> None:
    imgs, labels = images_and_labels()
    with pytest.raises(InputError, match="truncated or corrupt"):
        data.parse_batch(cifar_pickle(imgs, labels)[:-100], data.DATASETS["CIFAR100"], "f")


def test_missing_test_set_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cifar-100-python/test.*--download"):
        data.load_cifar("CIFAR100", tmp_path)
    with pytest.raises(InputError, match="unknown dataset 'MNIST'"):
        data.load_cifar("MNIST", tmp_path)


def test_default_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BINEXPORT_DATA", str(tmp_path / "mine"))
    assert data.default_root() == tmp_path / "mine"
    monkeypatch.delenv("BINEXPORT_DATA")
    assert data.default_root() == Path.home() / ".cache" / "binexport" / "data"


# --- downloads, from an HTTP server on loopback ------------------------------------------------------------------


def make_archive(
    folder: Path,
    name: str = "cifar-100-python.tar.gz",
    member: str = "cifar-100-python/test",
    payload: bytes | None = None,
) -> tuple[Path, str, np.ndarray]:
    """A small archive with the real member names (and a path-traversal member that must never be written)."""
    imgs, labels = images_and_labels(n=8)
    payload = cifar_pickle(imgs, labels) if payload is None else payload
    path = folder / name
    with tarfile.open(path, "w:gz") as tar:
        for arcname, blob in ((member, payload), ("cifar-100-python/meta", b"x"), ("../escaped", b"evil")):
            info = tarfile.TarInfo(arcname)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path, hashlib.md5(path.read_bytes()).hexdigest(), imgs


def expect_md5(monkeypatch: pytest.MonkeyPatch, name: str, md5: str) -> None:
    monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(data.DATASETS[name], md5=md5))


def test_download_with_the_right_md5_places_only_the_test_file(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, www = server
    (www / "kriz").mkdir()
    _, md5, imgs = make_archive(www / "kriz")
    expect_md5(monkeypatch, "CIFAR100", md5)
    root = tmp_path / "root" / "data"
    ds = data.load_cifar("CIFAR100", root, download=True, base_url=url)
    assert np.array_equal(ds.images, imgs)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == ["cifar-100-python", "cifar-100-python/test"]
    assert not (tmp_path / "root" / "escaped").exists()
    # present now: no second download even with --download (the server is no longer needed)
    assert data.load_cifar("CIFAR100", root, download=True, base_url="http://127.0.0.1:9/none").labels.size == 8


def test_download_with_a_wrong_md5_keeps_nothing(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, www = server
    (www / "kriz").mkdir()
    make_archive(www / "kriz")  # the table keeps the official md5, which this archive does not have
    monkeypatch.setenv("BINEXPORT_DATA_URL", url)
    root = tmp_path / "data"
    with pytest.raises(InputError, match="does not match the published eb9058c3a382ffc7106e4002c42a8d85"):
        data.load_cifar("CIFAR100", root, download=True)
    assert list(root.rglob("*")) == []


def test_download_refuses_an_archive_without_the_test_file(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, www = server
    (www / "kriz").mkdir()
    _, md5, _ = make_archive(www / "kriz", member="cifar-100-python/train")
    expect_md5(monkeypatch, "CIFAR100", md5)
    with pytest.raises(InputError, match="has no file cifar-100-python/test"):
        data.download_cifar("CIFAR100", tmp_path / "d", base_url=url)
    assert list((tmp_path / "d").rglob("*")) == []


def test_download_reports_an_unreachable_server(server, tmp_path: Path) -> None:
    url, _ = server  # nothing served under it: 404
    with pytest.raises(InputError, match="download failed"):
        data.download_cifar("CIFAR10", tmp_path / "d", base_url=url)
    with pytest.raises(InputError, match="expected http"):
        data.download_cifar("CIFAR10", tmp_path / "d", base_url="file:///etc")
