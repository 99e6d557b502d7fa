"""SVHN: the official test_32x32.mat layout (scipy.io.savemat as the independent writer), streamed; lying files."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from support import matwriter as mw
from support.cli import invoke
from support.models import tiny_model
from support.refusals import assert_refused

from binexport import formats, verify
from binexport.data import DATASET_NAMES, load_test_set, normalize
from binexport.data.svhn import FILE, LABELS, load_svhn
from binexport.errors import InputError


def _official(root: Path, images: np.ndarray, digits: np.ndarray, compress: bool = False) -> Path:
    """``images`` (N, 32, 32, 3) and digits 0..9 as the official file holds them: X 32x32x3xN, y Nx1, 10 = 0."""
    root.mkdir(parents=True, exist_ok=True)
    y = np.where(digits == 0, 10, digits).astype(np.float64).reshape(-1, 1)
    x = np.ascontiguousarray(images.transpose(1, 2, 3, 0))
    scipy.io.savemat(root / FILE, {"X": x, "y": y}, do_compression=compress, format="5")
    return root / FILE


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("compress", [False, True])
def test_images_and_labels_are_read_as_written_in_any_slice_order(tmp_path: Path, compress: bool) -> None:
    images, digits = _images(40), np.arange(40) % 10
    _official(tmp_path, images, digits, compress)
    ds = load_svhn(tmp_path)
    assert (ds.name, ds.num_classes, len(ds.images)) == ("SVHN", 10, 40)
    assert np.array_equal(ds.labels, digits)
    for a, b in [(0, 7), (7, 20), (30, 40), (2, 5), (20, 30), (39, 99)]:  # forward, back, skip ahead, past the end
        assert np.array_equal(ds.images[a:b], images[a:b]), (a, b)
    assert LABELS == tuple("0123456789") and "SVHN" in DATASET_NAMES


def test_verify_on_svhn_counts_exactly(tmp_path: Path) -> None:
    from binexport.runtimes.torch_ref import reference_logits

    model = tiny_model(8, 1, num_classes=10, seed=4)
    images = _images(30, seed=1)
    top = np.argsort(-reference_logits(model, normalize(images)), axis=1)
    digits = np.concatenate([top[:20, 0], top[20:, -1]])  # 20 right, 10 wrong
    _official(tmp_path / "data", images, digits, compress=True)
    ref = tmp_path / "m.packed.pth.tar"
    ref.write_bytes(formats.get("packed").write(model))
    r = verify([ref], dataset="SVHN", data_root=tmp_path / "data", device="cpu", batch_size=8)
    assert (r.data, r.num_images, r.num_classes) == ("SVHN", 30, 10)
    assert r.artifacts[0].top1_correct == 20
    res = invoke("verify", str(ref), "--dataset", "svhn", "--data-root", str(tmp_path / "data"))
    assert res.exit_code == 0, res.output


def test_streaming_holds_a_chunk_not_the_set(tmp_path: Path) -> None:
    n = 2000  # 6 MB of images
    _official(tmp_path, _images(n), np.arange(n) % 10)
    ds = load_svhn(tmp_path)
    tracemalloc.start()
    for a in range(0, n, 100):
        ds.images[a : a + 100]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * 100 * 3072, peak  # a chunk and its transposed copy, not 6 MB


def _write(tmp_path: Path, data: bytes) -> Path:
    (tmp_path / FILE).write_bytes(data)
    return tmp_path


def _x(n: int, dims: tuple[int, ...] | None = None, **kw: object) -> bytes:
    return mw.numeric("X", np.zeros((32, 32, 3, n), np.uint8), dims=dims, **kw)  # type: ignore[arg-type]


def _y(n: int, value: float = 1.0) -> bytes:
    return mw.numeric("y", np.full((n, 1), value))


def _bomb(n: int) -> bytes:
    """X of n honest-looking images of zeros (24 MB for 8000) in a ~25 KB zlib stream."""
    size = n * 32 * 32 * 3
    prefix = mw.matrix_prefix("X", mw.MX["uint8"], (32, 32, 3, n), 8 + size) + struct.pack("<II", mw.MI["uint8"], size)
    z = mw.zeros_stream(prefix, size)
    return struct.pack("<II", mw.MI["compressed"], len(z)) + z


LYING = {
    "y shorter than X": (lambda: mw.mat_file(_x(5), _y(4)), "expected 5 x 1"),
    "X declares more images than it holds": (lambda: mw.mat_file(_x(5, dims=(32, 32, 3, 50)), _y(50)), "declares"),
    "X of the wrong class": (lambda: mw.mat_file(mw.numeric("X", np.zeros((32, 32, 3, 2))), _y(2)), "uint8 32 x 32"),
    "X of the wrong shape": (lambda: mw.mat_file(mw.numeric("X", np.zeros((28, 28, 3, 2), np.uint8)), _y(2)), "shape"),
    "label 11": (lambda: mw.mat_file(_x(3), _y(3, 11.0)), "labels are 1..10"),
    "label 0": (lambda: mw.mat_file(_x(3), _y(3, 0.0)), "labels are 1..10"),
    "no y": (lambda: mw.mat_file(_x(3)), "expected the variables X"),
    "truncated": (lambda: mw.mat_file(_x(3), _y(3))[:-200], "truncated"),
    "zlib bomb": (lambda: mw.mat_file(_bomb(8000), _y(8000)), "passes"),
    "v7.3": (lambda: b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM", "v7.3"),
    "not MAT": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(200), "not a MAT file"),
}


@pytest.mark.parametrize("case", sorted(LYING))
def test_a_lying_file_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    make, words = LYING[case]
    root = _write(tmp_path, make())
    with pytest.raises(InputError, match=words):
        ds = load_test_set(dataset="SVHN", data_root=root)
        ds.images[0 : len(ds.images)]
    model = tmp_path / "m.packed.pth.tar"
    model.write_bytes(formats.get("packed").write(tiny_model(8, 1, num_classes=10)))
    res = invoke("verify", str(model), "--dataset", "SVHN", "--data-root", str(root))
    assert_refused(res)


def test_a_missing_file_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="ufldl.stanford.edu"):
        load_svhn(tmp_path)
    with pytest.raises(InputError, match="downloads the CIFAR archives only"):
        load_svhn(tmp_path, download=True)


def test_header_words_are_little_endian(tmp_path: Path) -> None:
    """The writer's files carry the level-5 version 0x0100 as the official file does (bytes 124-125)."""
    path = _official(tmp_path, _images(1), np.array([3]))
    head = path.read_bytes()[:128]
    assert struct.unpack("<H", head[124:126])[0] == 0x0100 and head[126:128] == b"IM"
    assert load_svhn(tmp_path).images[0:1].shape == (1, 32, 32, 3)
