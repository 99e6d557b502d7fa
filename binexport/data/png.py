"""Labelled PNG folders: a strict PNG decoder and the label conventions of the CIFAR samples.

A full imaging library would be a dependency for one job: decoding 8-bit,
non-interlaced PNGs (what CIFAR samples are). Anything else is refused with a
message instead of being guessed at.
"""

from __future__ import annotations

import re
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from binexport.errors import InputError

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel
_MAX_SIDE = 4096
_MAX_FILE = 16 * 2**20
#: Labels are plain ASCII digits, at most 9 (str.isdigit() takes '²', which int() refuses, and 20 digits
#: overflow int64); a model has far fewer classes anyway.
_LABEL_DIGITS = re.compile(r"[0-9]{1,9}", re.ASCII)


def read_png(path: str | Path, expect: tuple[int, int] | None = None, max_pixels: int | None = None) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an 8-bit non-interlaced PNG (grey and alpha dropped/expanded).

    ``expect`` (width, height) refuses any other size from the IHDR chunk, before
    anything is decompressed: a 75 KB file can declare 4096x4096 and take a
    minute to decode. ``max_pixels`` refuses, just as early, an image of more than
    that many pixels (``predict`` takes any size up to it). Decompression never
    produces more than the image needs.
    """
    p = Path(path)
    data = _read_file(p)
    if not data.startswith(_PNG_MAGIC):
        raise InputError(f"{p}: not a PNG file")
    if len(data) < 16 or data[12:16] != b"IHDR":
        raise InputError(f"{p}: PNG has no IHDR chunk first; truncated or not a PNG")
    if struct.unpack(">I", data[8:12])[0] != 13 or len(data) < 33:
        raise InputError(f"{p}: PNG IHDR chunk has {struct.unpack('>I', data[8:12])[0]} bytes, expected 13")
    _check_crc(data, 8, 13, p)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if expect is not None and (width, height) != expect:
        raise InputError(
            f"{p}: image is {width}x{height}, expected {expect[0]}x{expect[1]} RGB (CIFAR); resize it first"
        )
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            f"{p}: image is {width}x{height} ({width * height:,} pixels), more than the {max_pixels:,} binexport "
            "decodes; scale it down first (e.g. to 512x512: the model sees 32x32)"
        )
    if (
        depth != 8
        or colour not in _CHANNELS
        or interlace != 0
        or not (0 < width <= _MAX_SIDE)
        or not (0 < height <= _MAX_SIDE)
    ):
        raise InputError(
            f"{p}: unsupported PNG ({width}x{height}, bit depth {depth}, colour type {colour}, "
            f"interlace {interlace}); expected 8-bit non-interlaced RGB, RGBA or grey"
        )
    pos, idat = 33, []
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if len(chunk) != length:
            raise InputError(f"{p}: truncated PNG chunk {ctype!r}")
        _check_crc(data, pos, length, p)
        if ctype == b"IDAT":
            idat.append(chunk)
        elif ctype == b"IEND":
            break
        pos += 12 + length
    ch = _CHANNELS[colour]
    stride = width * ch
    need = height * (stride + 1)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), need)  # max_length: a bomb stops here
    except zlib.error as e:
        raise InputError(f"{p}: corrupt PNG image data ({e})") from None
    if len(raw) < need:
        raise InputError(f"{p}: PNG image data is truncated")
    img = _unfilter(raw, height, stride, ch, p).reshape(height, width, ch)
    if ch in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _check_crc(data: bytes, pos: int, length: int, p: Path) -> None:
    """The CRC-32 after the chunk at ``pos`` (of its type and data) matches: a flipped bit is a corrupt file."""
    end = pos + 8 + length
    ctype = data[pos + 4 : pos + 8]
    if len(data) < end + 4:
        raise InputError(f"{p}: PNG chunk {ctype!r} at byte {pos} has no CRC; the file is truncated")
    stored, actual = struct.unpack(">I", data[end : end + 4])[0], zlib.crc32(data[pos + 4 : end])
    if stored != actual:
        raise InputError(
            f"{p}: PNG chunk {ctype!r} at byte {pos} fails its CRC (stored {stored:08x}, computed "
            f"{actual:08x}); the file is corrupt"
        )


def _read_file(p: Path) -> bytes:
    """A regular file's bytes, up to :data:`_MAX_FILE` (a FIFO blocks and /dev/zero never ends)."""
    try:
        st = p.stat()
    except OSError as e:
        raise InputError(f"{p}: can't be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file; expected a PNG image")
    try:
        with open(p, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as e:
        raise InputError(f"{p}: can't be read ({e.strerror or e})") from None
    if len(data) > _MAX_FILE:
        raise InputError(f"{p}: larger than {_MAX_FILE >> 20} MiB; a 32x32 PNG is a few KB")
    return data


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, p: Path) -> np.ndarray:
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) & 0xFF
        elif ftype in (1, 3, 4):
            cur = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                c = prev[x - bpp] if x >= bpp else 0
                b = prev[x]
                if ftype == 1:
                    pred = a
                elif ftype == 3:
                    pred = (a + b) >> 1
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + pred) & 0xFF
        else:
            raise InputError(f"{p}: bad PNG filter type {ftype} on row {y}")
        out[y] = cur
        prev = cur
    return out


_LABEL = re.compile(r"_([0-9]+)\.png$", re.IGNORECASE | re.ASCII)


class PngImages:
    """Labelled PNG files decoded on demand: ``images[a:b]`` is an (n, 32, 32, 3) uint8 array of those files.

    ``verify`` slices it a chunk at a time, so a folder of 40,000 images takes the memory of one chunk, not of
    40,000 decoded images (3 KB each as uint8, 12 KB as float32, then copied per runtime).
    """

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("PngImages takes slices: images[a:b]")
        files = self.files[index]
        if not files:
            return np.zeros((0, 32, 32, 3), np.uint8)
        return np.stack([read_png(f, expect=(32, 32)) for f in files])


def list_labelled_folder(folder: str | Path) -> tuple[PngImages, np.ndarray, list[str]]:
    """The images of a folder, not yet decoded (see :class:`PngImages`), their labels and names.

    Labels come from the file name (``..._LABEL.png``, as the CIFAR samples) or
    from numbered subfolders (``3/xyz.png``). Sorted by name for repeatability.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of images")
    files = sorted(root.glob("*.png")) + sorted(root.glob("*/*.png"))
    if not files:
        raise InputError(f"{root}: no .png images found (expected NAME_LABEL.png files or LABEL/ subfolders)")
    labels, names = [], []
    for f in files:
        m = _LABEL.search(f.name) if f.parent == root else None
        text = m.group(1) if m else (f.parent.name if f.parent != root else "")
        if not _LABEL_DIGITS.fullmatch(text):
            raise InputError(
                f"{f}: no label: name it NAME_LABEL.png or put it in a subfolder named by its label "
                "(a class number of at most 9 digits, 0-9)"
            )
        labels.append(int(text))
        names.append(str(f.relative_to(root)))
    return PngImages(files), np.asarray(labels, dtype=np.int64), names


def load_labelled_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, 32, 32, 3) uint8, labels, names from a folder, every image decoded now
    (:func:`list_labelled_folder` decodes on demand)."""
    images, labels, names = list_labelled_folder(folder)
    return images[:], labels, names
