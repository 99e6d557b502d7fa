"""A torch file inside a one-member zip, as a model zoo publishes it: pytorchcv's ``<name>.pth.zip``.

pytorchcv downloads ``wrn20_10_1bit_cifar10-0326-e6140f8a.pth.zip`` from imgclsmob's releases, extracts the
one ``.pth`` in it and deletes the zip; a user who fetched the zip by hand holds the zip. It is read here
without touching the disk: one member, no folders, stored or deflated, and a declared size the file
justifies (weights barely compress, so a member claiming more than :data:`MAX_RATIO` x its compressed bytes
is a zip bomb, not a checkpoint), read with a bound and its CRC checked by ``zipfile``.
"""

from __future__ import annotations

import zipfile
from typing import IO

from binexport.errors import InputError

#: Torch files a wrapper may hold (a torch.save zip's own members all sit in a folder: ``archive/data.pkl``).
SUFFIXES = (".pth", ".pt", ".pth.tar", ".th", ".tar")
#: Most uncompressed bytes per compressed byte a member may declare (float weights deflate ~1.1x).
MAX_RATIO = 16
#: Largest member read into memory.
MAX_BYTES = 4 * 2**30


def wrapped_member(f: IO[bytes], size: int) -> bytes | None:
    """The bytes of the one torch file in a wrapper zip; None for any other zip (a torch.save zip included).

    Raises:
        InputError: a wrapper whose member is compressed oddly, declares more than the file justifies, or
            does not decompress to what it declares (truncated, corrupt, CRC mismatch).
    """
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # the torch scan names what is wrong with it
    if len(infos) != 1 or "/" in infos[0].filename or not infos[0].filename.endswith(SUFFIXES):
        return None
    info = infos[0]
    name = repr(info.filename[:60])
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
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise InputError(f"refused: zip member {name} can't be extracted, truncated or corrupt ({e})") from None
    if len(data) != info.file_size:
        raise InputError(f"refused: zip member {name} declares {info.file_size:,} bytes but holds {len(data):,}")
    return data
