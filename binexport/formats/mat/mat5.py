"""A bounded reader for the small subset of level-5 MAT files that McDonnell's models use (pure Python + numpy).

What his four files hold (checked element by element): every variable is one ``miCOMPRESSED`` element
wrapping one ``miMATRIX``; the variables binexport reads are numeric arrays (``single``, ``double`` stored as
``miUINT8``/``miUINT16``/``miDOUBLE``, ``logical`` ``uint8``) or cells of numeric arrays, one level deep.
Everything else in a file (his ``struct`` and char-cell variables) is listed by name and never parsed.

Why not ``scipy.io.loadmat``: its compiled reader trusts type codes and has no depth limit, so crafted
3-11 KB files killed the process (SIGSEGV/SIGBUS), and it inflates every zlib stream in full. Here:

* only the known data types and array classes are accepted; cells may hold numeric arrays only (depth 2);
* every declared size is checked against the bytes that hold it and against the shape it must have
  (a numeric array's data element is exactly ``prod(dims) * itemsize`` bytes; dims are ``>= 0``);
* a variable's header is read by inflating at most :data:`HEAD_BYTES`; its data only when asked, with
  ``zlib`` told never to return more than the declared (and checked) size, and a stream that holds more
  than it declares is refused;
* every byte inflated or copied is charged to one :class:`Budget` per file (see ``binexport.formats.mat``).
"""

from __future__ import annotations

import io
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from binexport.errors import InputError
from binexport.formats.mat.source import Budget, Source

MI_MATRIX, MI_COMPRESSED = 14, 15
#: numeric data-element types: mdtype -> numpy dtype character code (``b`` int8 ... ``d`` double)
_MI_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
#: numeric array classes (mx*_CLASS) -> the dtype the values have in MATLAB
_MX_NUMERIC = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 16: "function handle", 17: "opaque"}
MX_CELL = 1
#: a variable's header (tag, flags, dims, name) is inflated up to this many bytes to list it
HEAD_BYTES = 8 + 16 + 8 + 4 * 32 + 8 + 264
MAX_DIMS = 32
MAX_NAME = 255
#: McDonnell's files hold 12 and 41 variables and cells of at most 21 arrays; these bound the objects a file
#: of tiny elements could make a reader create (a WRN-1000 would still fit)
MAX_VARS = 4096
MAX_CELLS = 4096
_NAME = re.compile(r"[A-Za-z0-9_]*")


def class_name(cls: int) -> str:
    """``single``, ``cell``, ... for an mx class code (for messages)."""
    if cls in _MX_NUMERIC:
        return {6: "double", 7: "single"}.get(cls, np.dtype(_MX_NUMERIC[cls]).name)
    return _MX_NAMES.get(cls, f"unknown class {cls}")


@dataclass
class Var:
    """One top-level variable as its header declares it (nothing of its data read yet)."""

    name: str
    cls: int
    dims: tuple[int, ...]
    logical: bool
    complex: bool
    offset: int  # of its element in the file
    open: Callable[[], tuple[Source, int]] | None = None  # a source just past its miMATRIX tag, and that size

    @property
    def class_name(self) -> str:
        return class_name(self.cls)


class MatFile:
    """The variables of a level-5 MAT file held in ``data``, read within ``budget``.

    Raises:
        InputError: bad header, an element of unknown type, sizes past the file, and every check below.
    """

    def __init__(self, data: bytes, label: str, budget: Budget) -> None:
        self.data, self.label, self.budget = memoryview(data), label, budget
        if len(data) < 128:
            raise InputError(
                f"{label}: {len(data)} bytes, shorter than the 128-byte MAT-file header; the file is truncated"
            )
        endian = bytes(data[126:128])
        if endian != b"IM":
            raise InputError(
                f"{label}: MAT-file endian mark {endian!r}; expected 'IM' (little-endian, as every "
                "McDonnell file and every file MATLAB writes on x86/ARM) at byte 126"
            )
        self.bo = "<"
        version = struct.unpack(self.bo + "H", data[124:126])[0]
        if version != 0x0100:
            raise InputError(f"{label}: MAT-file version {version:#06x}; expected 0x0100 (level 5)")
        self.vars = self._list()

    def _tag(self, src: Source, what: str) -> tuple[int, int, bool]:
        """(mdtype, byte count, small) of the next data element tag."""
        first = struct.unpack(self.bo + "I", src.read(4, what))[0]
        if first >> 16:  # small data element: count in the high half, data in the next 4 bytes
            n, mdtype = first >> 16, first & 0xFFFF
            if n > 4:
                raise InputError(f"{self.label}: {what}: a small data element declares {n} bytes (at most 4)")
            return mdtype, n, True
        return first, struct.unpack(self.bo + "I", src.read(4, what))[0], False

    def _payload(self, src: Source, n: int, small: bool, what: str) -> bytes | memoryview:
        raw = src.read(4 if small else n + (-n) % 8, what)
        return raw if len(raw) == n else memoryview(raw)[:n]

    def _list(self) -> dict[str, Var]:
        out: dict[str, Var] = {}
        pos, end = 128, len(self.data)
        while pos < end:
            if end - pos < 8:
                raise InputError(f"{self.label}: {end - pos} stray bytes at offset {pos:,}; the file is damaged")
            mdtype, n = struct.unpack_from(self.bo + "II", self.data, pos)
            if mdtype not in (MI_MATRIX, MI_COMPRESSED):
                raise InputError(
                    f"{self.label}: an element of type {mdtype} at offset {pos:,}; a MAT file's "
                    "variables are miMATRIX (14) or miCOMPRESSED (15): the file is damaged or hostile"
                )
            if n > end - pos - 8:
                raise InputError(
                    f"{self.label}: the element at offset {pos:,} declares {n:,} bytes, "
                    f"{end - pos - 8:,} remain; the file is truncated"
                )
            body = self.data[pos + 8 : pos + 8 + n]
            opener = self._opener(body, mdtype == MI_COMPRESSED, pos)
            var = self._header(opener()[0], f"the variable at offset {pos:,}", pos)
            var.open = opener
            if var.name in out:
                raise InputError(f"{self.label}: variable {var.name!r} appears twice; the file is damaged")
            out[var.name] = var
            if len(out) > MAX_VARS:
                raise InputError(
                    f"{self.label}: more than {MAX_VARS:,} variables; McDonnell's files hold 12 "
                    "or 41: the file is damaged or hostile"
                )
            pos += 8 + n + ((-n) % 8 if mdtype == MI_MATRIX else 0)
        return out

    def _opener(self, body: memoryview, compressed: bool, pos: int) -> Callable[[], tuple[Source, int]]:
        """Positions a fresh source just past the variable's miMATRIX tag; returns it and the matrix size."""

        def open_() -> tuple[Source, int]:
            what = f"the variable at offset {pos:,}"
            if not compressed:
                src = Source(self.label, body, False, len(body))
                return src, len(body)
            head = Source(self.label, body, True, 8)
            mdtype, n = struct.unpack(self.bo + "II", head.read(8, what))
            if mdtype != MI_MATRIX:
                raise InputError(f"{self.label}: {what} is compressed type {mdtype}; expected miMATRIX (14)")
            src = Source(self.label, body, True, 8 + n)
            src._z, src._in, src.pos = head._z, head._in, 8
            return src, n

        return open_

    def _header(self, src: Source, what: str, offset: int) -> Var:
        """Array flags, dims and name of the matrix ``src`` is positioned in (bounded, whatever it declares)."""
        mdtype, n, small = self._tag(src, what)
        if mdtype != 6 or n != 8:
            raise InputError(
                f"{self.label}: {what}: array flags of type {mdtype} and {n} bytes; expected "
                "miUINT32 (6) of 8 bytes: the file is damaged or hostile"
            )
        flags = struct.unpack(self.bo + "II", self._payload(src, n, small, what))[0]
        cls = flags & 0xFF
        mdtype, n, small = self._tag(src, what)
        if mdtype != 5 or n % 4 or not 8 <= n <= 4 * MAX_DIMS:
            raise InputError(
                f"{self.label}: {what}: dimensions of type {mdtype} and {n} bytes; expected "
                f"miINT32 (5), 2 to {MAX_DIMS} of them"
            )
        dims = struct.unpack(self.bo + f"{n // 4}i", self._payload(src, n, small, what))
        if min(dims) < 0:
            raise InputError(
                f"{self.label}: {what} declares the dimensions {list(dims)}; a dimension can't be "
                "negative: the file is damaged or hostile"
            )
        mdtype, n, small = self._tag(src, what)
        if mdtype != 1 or n > MAX_NAME:
            raise InputError(
                f"{self.label}: {what}: a name of type {mdtype} and {n} bytes; expected miINT8 (1) "
                f"of at most {MAX_NAME} bytes"
            )
        name = bytes(self._payload(src, n, small, what)).decode("latin-1")
        if not _NAME.fullmatch(name):
            raise InputError(
                f"{self.label}: {what} is named {ascii(name)[:80]}; MATLAB names are ASCII letters, "
                "digits and underscores: the file is damaged or hostile"
            )
        return Var(name, cls, tuple(dims), bool(flags & 0x200), bool(flags & 0x800), offset)

    def load(self, var: Var) -> np.ndarray | list[np.ndarray]:
        """A numeric variable as an array in MATLAB's shape (column-major), or a cell as its elements' list.

        Raises:
            InputError: a class other than numeric or a cell of numeric arrays, or any size that disagrees.
        """
        what = f"variable {var.name!r}"
        assert var.open is not None  # every listed variable has one (not a validation)
        src, n = var.open()
        self.budget.charge(n, what)
        head = self._header(src, what, var.offset)
        if var.cls == MX_CELL:
            count = math.prod(head.dims)
            if count > min(MAX_CELLS, n // 56):  # an element is at least 56 bytes (tag, flags, 2 dims, name, data)
                raise InputError(
                    f"{self.label}: {what} declares {count:,} cells in {n:,} bytes; expected at most "
                    f"{MAX_CELLS:,} (one per layer): the file is damaged or hostile"
                )
            cells = []
            for i in range(count):
                where = f"{what}{{{i + 1}}}"
                tag, m, _ = self._tag(src, where)
                if tag != MI_MATRIX:
                    raise InputError(f"{self.label}: {where} is an element of type {tag}; expected miMATRIX (14)")
                start = src.pos
                inner = self._header(src, where, var.offset)
                if inner.cls not in _MX_NUMERIC:
                    raise InputError(
                        f"{self.label}: {where} is a {class_name(inner.cls)} array; binexport "
                        "reads cells of numeric arrays only (no nesting)"
                    )
                cells.append(self._numeric(src, inner, where))
                if src.pos - start != m:
                    raise InputError(
                        f"{self.label}: {where} declares {m:,} bytes but holds {src.pos - start:,}; the file is damaged"
                    )
            out: np.ndarray | list[np.ndarray] = cells
        elif var.cls in _MX_NUMERIC:
            out = self._numeric(src, head, what)
        else:
            raise InputError(
                f"{self.label}: {what} is a {class_name(var.cls)} array; expected a numeric array or a cell of them"
            )
        if src.pos != src.cap:
            raise InputError(
                f"{self.label}: {what} declares {src.cap - src.pos:,} bytes more than its "
                "array holds; the file is damaged"
            )
        src.finish(what)
        return out

    def stream(self, var: Var) -> tuple[np.dtype, Callable[[int], bytes]]:
        """A numeric variable's data read in pieces (a large test set): its stored dtype, and a reader of the next
        ``n`` bytes that inflates only those. Its size is checked against the shape and charged to the budget
        first. Each call starts at the data's first byte again.

        Raises:
            InputError: not a numeric array, or a size that disagrees with the shape (as :meth:`load`).
        """
        what = f"variable {var.name!r}"
        assert var.open is not None  # every listed variable has one (not a validation)
        src, _ = var.open()
        head = self._header(src, what, var.offset)
        if var.cls not in _MX_NUMERIC:
            raise InputError(f"{self.label}: {what} is a {class_name(var.cls)} array; expected a numeric array")
        dt, n, small = self._data_tag(src, head, what)
        self.budget.charge(n, what)
        if small:  # at most 4 bytes, inside the tag
            return dt, io.BytesIO(bytes(self._payload(src, n, small, what))).read
        return dt, lambda k: src.read(k, what)

    def _numeric(self, src: Source, head: Var, what: str) -> np.ndarray:
        dt, n, small = self._data_tag(src, head, what)
        raw = self._payload(src, n, small, what)
        with np.errstate(all="ignore"):  # double data in a single array may overflow: the reader checks values
            arr = np.frombuffer(raw, dt).astype(_MX_NUMERIC[head.cls] if not head.logical else "u1")
        return arr.reshape(head.dims, order="F")

    def _data_tag(self, src: Source, head: Var, what: str) -> tuple[np.dtype, int, bool]:
        """The data element's dtype, byte count and smallness, checked against the array's class and shape."""
        if head.complex:
            raise InputError(f"{self.label}: {what} is complex; McDonnell's models hold real numbers")
        mdtype, n, small = self._tag(src, what)
        if mdtype not in _MI_NUMERIC:
            raise InputError(
                f"{self.label}: {what} ({class_name(head.cls)}) holds data of type {mdtype}; "
                "expected a numeric MAT data type"
            )
        dt = np.dtype(self.bo + _MI_NUMERIC[mdtype])
        if (head.logical and (head.cls != 9 or mdtype != 2)) or (_MX_NUMERIC[head.cls][0] in "iu" and dt.kind == "f"):
            raise InputError(
                f"{self.label}: {what} is a {'logical ' if head.logical else ''}{class_name(head.cls)} "
                f"array stored as {dt.name}; MATLAB stores logical arrays as uint8 and integers as "
                "integers: the file is damaged or hostile"
            )
        count = math.prod(head.dims)
        if n != count * dt.itemsize:
            raise InputError(
                f"{self.label}: {what} declares the shape {list(head.dims)} ({count:,} values of "
                f"{dt.itemsize} bytes) but its data element declares {n:,} bytes; the file is damaged"
            )
        return dt, n, small
