"""A torch file inside a one-member zip, as a model zoo publishes it: pytorchcv's ``<name>.pth.zip``.

pytorchcv downloads ``wrn20_10_1bit_cifar10-0326-e6140f8a.pth.zip`` from imgclsmob's releases, extracts the
one ``.pth`` in it and deletes the zip; a user who fetched the zip by hand holds the zip. It is read here
without touching the disk: one member, no folders, stored or deflated, unencrypted, and a declared size the
file justifies (weights barely compress, so a member claiming more than :data:`MAX_RATIO` x its compressed
bytes is a zip bomb, not a checkpoint), read with a bound and its CRC checked by ``zipfile``.

Everything ``zipfile`` and ``zlib`` can raise on a stranger's bytes (:data:`ZIP_ERRORS`: a corrupt deflate
stream, an unknown "version needed to extract", a bad CRC, a truncated member, an encrypted one...) becomes
one :class:`~binexport.errors.InputError` naming the member; the caller adds the file.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import IO

from binexport.errors import InputError

#: Torch files a wrapper may hold (a torch.save zip's own members all sit in a folder: ``archive/data.pkl``).
SUFFIXES = (".pth", ".pt", ".pth.tar", ".th", ".tar")
#: Most uncompressed bytes per compressed byte a member may declare (float weights deflate ~1.1x).
MAX_RATIO = 16
#: Largest member read into memory.
MAX_BYTES = 4 * 2**30
#: What ``zipfile`` / ``zlib`` raise on bytes they can't read: BadZipFile (bad magic, CRC, truncated header),
#: NotImplementedError (a zip version or feature they lack), RuntimeError (encrypted), zlib.error (corrupt
#: deflate stream), EOFError (truncated stream), ValueError / OverflowError / struct.error (nonsense offsets).
ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    OverflowError,
    struct.error,
)
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length


def wrapped_member(f: IO[bytes], size: int) -> bytes | None:
    """The bytes of the one torch file in a wrapper zip; None for any other zip (a torch.save zip included).

    Raises:
        InputError: a wrapper whose member is encrypted or compressed oddly, declares more than the file
            justifies, or can't be extracted to what it declares (truncated, corrupt deflate stream, CRC
            mismatch, a zip version ``zipfile`` does not read); the message names the member.
    """
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
    except ZIP_ERRORS as e:
        first = _first_member_name(f)
        if first is None or not _is_wrapped(first):
            return None  # not a wrapper: the torch scan names what is wrong with it
        raise InputError(f"refused: zip member {first[:60]!r} can't be read: {_why(e)}") from None
    if len(infos) != 1 or not _is_wrapped(infos[0].filename):
        return None
    info = infos[0]
    name = repr(info.filename[:60])
    if info.flag_bits & 0x1:
        raise InputError(
            f"refused: zip member {name} is encrypted; binexport reads unencrypted zips only: extract the "
            "checkpoint with its password and give the extracted file"
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InputError(
            f"refused: zip member {name} is compressed with method {info.compress_type}; a "
            "checkpoint in a zip is stored or deflated"
        )
    bound = min(MAX_BYTES, MAX_RATIO * info.compress_size + 2**20)
    if info.header_offset + info.compress_size > size or info.file_size > bound:
        raise InputError(
            f"refused: zip member {name} declares {info.file_size:,} bytes from {info.compress_size:,} "
            f"compressed in a {size:,}-byte file; at most {bound:,} are plausible for a checkpoint"
        )
    try:
        with zf.open(info) as member:
            data = member.read(info.file_size + 1)
    except ZIP_ERRORS as e:
        raise InputError(f"refused: zip member {name} can't be extracted: {_why(e)}") from None
    if len(data) != info.file_size:
        raise InputError(f"refused: zip member {name} declares {info.file_size:,} bytes but holds {len(data):,}")
    return data


def _is_wrapped(filename: str) -> bool:
    """A member name a wrapper holds: a torch file's name, not in a folder."""
    return "/" not in filename and filename.endswith(SUFFIXES)


def _first_member_name(f: IO[bytes]) -> str | None:
    """The name in the zip's first local header (a wrapper's one member), where the directory can't be read."""
    try:
        f.seek(0)
        head = f.read(_LOCAL_HEADER.size)
        if len(head) < _LOCAL_HEADER.size:
            return None
        magic, n, _ = _LOCAL_HEADER.unpack(head)
        raw = f.read(n) if magic == b"PK\x03\x04" else b""
    except OSError:
        return None
    return raw.decode("cp437") if raw else None


def _why(e: Exception) -> str:
    """What went wrong, in words, with zipfile's own message (one line)."""
    text = " ".join(str(e).split())[:160] or type(e).__name__
    if isinstance(e, zlib.error):
        return f"its deflate stream is corrupt ({text})"
    if isinstance(e, NotImplementedError):
        return f"it needs a zip feature Python's zipfile does not read ({text}); re-zip it, or extract it and give the file"
    return f"the zip is truncated or corrupt ({type(e).__name__}: {text})"
