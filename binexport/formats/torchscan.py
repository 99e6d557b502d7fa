"""What a torch file declares it will allocate, checked against what the file can hold, before torch.load runs.

``torch.load`` believes the sizes in a file: a 1.3 KB zip can declare a 300 MB
storage, a legacy pickle a 300 GB one (allocated before its bytes are read), and
a deflated ``data.pkl`` can expand to gigabytes. This module reads the same
pickle with an unpickler that resolves every global to an inert stub (so no
code from the file runs and nothing but plain containers is built), collects
each storage's declared element count and type, and compares them with the
zip's central directory or with the size of the file. Only then does torch see it.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
import zlib
from typing import IO, Any

from binexport.errors import InputError

#: data.pkl (or a legacy file's object pickle) is a few KB for any WRN; larger is not a checkpoint of ours. A
#: pickle can build a 56-byte list per byte (EMPTY_LIST), so this bounds the scan to ~64 x 4 MiB.
MAX_PICKLE_BYTES = 4 * 2**20
#: Storage types torch.save writes, by the element size of their dtype.
STORAGE_ITEMSIZE = {
    "UntypedStorage": 1,
    "ByteStorage": 1,
    "CharStorage": 1,
    "BoolStorage": 1,
    "ShortStorage": 2,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "IntStorage": 4,
    "FloatStorage": 4,
    "LongStorage": 8,
    "DoubleStorage": 8,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Stub(dict):
    """Whatever a global names, it becomes this: callable, buildable, fillable (OrderedDict, lists), and inert."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _Scanner(pickle.Unpickler):
    """Records persistent ids (storages); every global is a stub, so the file runs no code."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__(f, encoding="bytes")
        self.storages: list[tuple[str, str, int]] = []  # (type name, key, declared elements)
        self._types: dict[tuple[str, str], type] = {}
        self.result: Any = None

    def find_class(self, module: str, name: str) -> Any:
        key = (str(module), str(name))
        if key not in self._types:
            self._types[key] = type("_Stub", (_Stub,), {"qualname": f"{key[0]}.{key[1]}", "short": key[1]})
        return self._types[key]

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            raise InputError(f"refused: unexpected persistent id {str(pid)[:80]!r}; torch.save writes ('storage', ...)")
        stype, key, numel = pid[1], pid[2], pid[4]
        name = getattr(stype, "short", None)
        if not (
            isinstance(name, str) and name in STORAGE_ITEMSIZE and getattr(stype, "qualname", "").startswith("torch.")
        ):
            raise InputError(
                f"refused: storage type {getattr(stype, 'qualname', type(stype).__name__)} is not one torch "
                "writes for tensors"
            )
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise InputError(f"refused: storage {str(key)[:40]!r} declares {str(numel)[:40]} elements")
        self.storages.append((name, str(key), numel))
        return _Stub()


class _Capped:
    """A file as the unpickler sees it, refusing reads past ``limit`` bytes; no read-ahead, so pickles in a row
    (a legacy file holds several) are consumed exactly as torch consumes them."""

    def __init__(self, f: IO[bytes], limit: int) -> None:
        self.f, self.left, self.limit = f, limit, limit

    def _take(self, data: bytes) -> bytes:
        if len(data) > self.left:
            raise InputError(
                f"refused: its object pickle is larger than {self.limit >> 20} MiB; a WRN checkpoint's is a few KB"
            )
        self.left -= len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        return self._take(self.f.read(self.left + 1 if n < 0 or n > self.left else n))

    def readline(self, n: int = -1) -> bytes:
        return self._take(self.f.readline(self.left + 1 if n < 0 or n > self.left else n))


def _scan(f: IO[bytes], limit: int = MAX_PICKLE_BYTES) -> _Scanner:
    s = _Scanner(_Capped(f, limit))  # type: ignore[arg-type]
    s.result = s.load()
    return s


def scan_zip(f: IO[bytes], size: int) -> None:
    """Check a zip checkpoint's directory and declared storages against its real sizes; InputError if they lie."""
    zf = zipfile.ZipFile(f)
    infos = zf.infolist()
    if not infos or len(infos) > 100_000:
        raise InputError(
            f"refused: holds {len(infos)} zip members; a torch.save file holds data.pkl and a few storages"
        )
    prefix = infos[0].filename.split("/", 1)[0]
    records = {}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise InputError(
                f"refused: zip member {info.filename[:60]!r} is compressed (method {info.compress_type}); "
                "torch.save stores every member uncompressed, so this file was not written by it"
            )
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
            raise InputError(
                f"refused: zip member {info.filename[:60]!r} declares {info.file_size:,} bytes, more than the "
                f"{size:,}-byte file can hold"
            )
        records[info.filename] = info.file_size
    pkl = f"{prefix}/data.pkl"
    if pkl not in records:
        raise InputError(f"refused: zip has no {pkl}; not a torch.save file")
    if records[pkl] > MAX_PICKLE_BYTES:
        raise InputError(f"refused: its data.pkl is {records[pkl]:,} bytes; a WRN checkpoint's is a few KB")
    with zf.open(pkl) as member:
        scanner = _scan(member)
    for name, key, numel in scanner.storages:
        rec = f"{prefix}/data/{key}"
        need = numel * STORAGE_ITEMSIZE[name]
        have = records.get(rec)
        if have is None:
            raise InputError(f"refused: storage {key[:40]!r} has no record {rec[:60]!r} in the zip")
        if need > have:
            raise InputError(
                f"refused: storage {key[:40]!r} declares {numel:,} elements of {name} ({need:,} bytes) but its "
                f"record holds {have:,} bytes"
            )


def scan_legacy(f: IO[bytes], size: int) -> None:
    """Check a legacy (non-zip) torch file: its storages are allocated from declared sizes before being read."""
    if _scan(f, 1 << 16).result != _LEGACY_MAGIC:
        raise InputError("not a readable PyTorch checkpoint (no legacy torch.save magic number), truncated or corrupt")
    _scan(f, 1 << 16)  # protocol version
    _scan(f, 1 << 16)  # sys_info
    scanner = _scan(f)
    left = size - f.tell()
    need = sum(numel * STORAGE_ITEMSIZE[name] + 8 for name, _, numel in scanner.storages)
    if need > left:
        biggest = max(scanner.storages, key=lambda s: s[2] * STORAGE_ITEMSIZE[s[0]])
        raise InputError(
            f"refused: truncated or corrupt: its storages declare {need:,} bytes but only {max(left, 0):,} bytes of the file follow "
            f"(e.g. storage {biggest[1][:40]!r}: {biggest[2]:,} elements of {biggest[0]})"
        )


def scan(f: IO[bytes], size: int, is_zip: bool) -> None:
    """Refuse a torch file whose declared sizes its bytes can't justify (InputError; the caller adds the path)."""
    try:
        (scan_zip if is_zip else scan_legacy)(f, size)
    except InputError:
        raise
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        RecursionError,
        MemoryError,
        LookupError,
        OSError,
        NotImplementedError,
        RuntimeError,  # zipfile: an encrypted member
        zlib.error,
        struct.error,
    ) as e:
        # the scan builds plain containers and stubs only: any failure here is the file's, not ours
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError(
            f"not a readable PyTorch checkpoint, truncated or corrupt ({type(e).__name__}: {first})"
        ) from None
