"""The PNG decoder and labelled-folder reader behind --images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from binexport.data import normalize
from binexport.data.png import load_labelled_folder, read_png
from binexport.errors import InputError
from binexport.model import CIFAR_MEAN, CIFAR_STD


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _filter_row(ftype: int, row: np.ndarray, prev: np.ndarray, bpp: int) -> bytes:
    r, p = row.astype(np.int32), prev.astype(np.int32)
    a = np.concatenate([np.zeros(bpp, np.int32), r[:-bpp]])
    c = np.concatenate([np.zeros(bpp, np.int32), p[:-bpp]])
    if ftype == 0:
        pred = np.zeros_like(r)
    elif ftype == 1:
        pred = a
    elif ftype == 2:
        pred = p
    elif ftype == 3:
        pred = (a + p) >> 1
    else:
        pa, pb, pc = np.abs(p - c), np.abs(a - c), np.abs(a + p - 2 * c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, p, c))
    return bytes([ftype]) + ((r - pred) & 0xFF).astype(np.uint8).tobytes()


def png_bytes(img: np.ndarray, filters: list[int] | None = None, colour: int = 2, ihdr: bytes | None = None) -> bytes:
    """A minimal PNG encoder with a chosen filter per row, to test every filter of the decoder."""
    h, w, ch = img.shape
    flat = img.reshape(h, w * ch)
    prev = np.zeros(w * ch, np.uint8)
    raw = b""
    for y in range(h):
        raw += _filter_row((filters or [0])[y % len(filters or [0])], flat[y], prev, ch)
        prev = flat[y]
    head = ihdr if ihdr is not None else struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", head) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def test_every_filter_type_decodes_exactly(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    p = tmp_path / "x_3.png"
    p.write_bytes(png_bytes(img, filters=[0, 1, 2, 3, 4]))
    assert np.array_equal(read_png(p), img)


def test_rgba_and_grey_become_rgb(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(png_bytes(rgba, filters=[4], colour=6))
    assert np.array_equal(read_png(tmp_path / "a.png"), rgba[:, :, :3])
    grey = np.random.default_rng(2).integers(0, 256, (3, 3, 1), dtype=np.uint8)
    (tmp_path / "g.png").write_bytes(png_bytes(grey, colour=0))
    assert np.array_equal(read_png(tmp_path / "g.png"), np.repeat(grey, 3, axis=2))


@pytest.mark.parametrize(
    "content,message",
    [
        (b"GIF89a", "not a PNG file"),
        (png_bytes(np.zeros((2, 2, 3), np.uint8), ihdr=b"\x00" * 5), "IHDR chunk has 5 bytes"),
        (png_bytes(np.zeros((2, 2, 3), np.uint8), ihdr=struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)), "bit depth 16"),
        (png_bytes(np.zeros((2, 2, 3), np.uint8))[:45], "truncated PNG chunk"),
        (b"\x89PNG\r\n\x1a\n", "PNG has no IHDR chunk"),
    ],
)
def test_bad_pngs_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "bad_1.png"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_png(p)


def test_labels_from_names_and_subfolders(tmp_path: Path) -> None:
    img = np.zeros((32, 32, 3), np.uint8)
    (tmp_path / "cat_3.png").write_bytes(png_bytes(img))
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "x.png").write_bytes(png_bytes(img))
    images, labels, names = load_labelled_folder(tmp_path)
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [3, 7] and names == ["cat_3.png", "7/x.png"]


def test_unlabelled_image_in_a_numbered_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "3"
    root.mkdir()
    (root / "foo.png").write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(InputError, match="no label"):
        load_labelled_folder(root)


def test_wrong_size_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big_1.png").write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8)))
    with pytest.raises(InputError, match="expected 32x32"):
        load_labelled_folder(tmp_path)


def test_normalize_follows_the_spec() -> None:
    img = np.full((1, 32, 32, 3), 200, np.uint8)
    x = normalize(img)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    for c in range(3):
        assert x[0, c, 0, 0] == pytest.approx((200 / 255 - CIFAR_MEAN[c]) / CIFAR_STD[c], rel=1e-6)


def test_real_samples_decode(realdata: Path) -> None:
    images, labels, names = load_labelled_folder(realdata / "cifar100-samples")
    assert images.shape == (20, 32, 32, 3) and labels[:3].tolist() == [49, 33, 72]
    assert 40 < images.mean() < 200  # real photos, not zeros or noise
