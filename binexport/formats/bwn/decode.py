"""Decoding a ``.bwn`` file's tensors: payload checksums, every encoding parsed first, then decoded in batches.

:func:`decode_tensors` is what :func:`binexport.formats.bwn.read` and ``read_tensors`` share; the writer uses
:func:`data_crc32` for the checksum each decoded tensor is held to.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from binexport.errors import FormatError
from binexport.formats.bwn import codec, planes, planes_decode, rans
from binexport.formats.bwn import container as box
from binexport.formats.bwn.planes_types import PlaneJob


def data_crc32(arr: np.ndarray, dtype: str) -> int:
    """CRC-32 of a tensor's decoded data as its ``raw`` (or, for b1, ``packed``) payload would hold it (section 7)."""
    if dtype == "b1":
        return zlib.crc32(np.packbits(np.ascontiguousarray(arr, dtype=bool).ravel()).data)
    return zlib.crc32(np.ascontiguousarray(arr, dtype=box.NUMPY[dtype]).data)


def check_crcs(c: box.Container) -> None:
    """Every tensor's payload ``crc32`` (FORMAT.md section 7): a mismatch is one line naming the tensors."""
    bad = [e.name for e in c.entries if not c.check_crc(e)]
    if bad:
        raise FormatError(
            f"{c.path}: checksum mismatch in tensor(s) {', '.join(bad[:3])} (field 'crc32'); the file is corrupt"
        )


def decode_tensors(
    c: box.Container, verify_checksums: bool, widen: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """Every tensor as stored (bf16 as its uint16 bits), or as float32 for the dtypes in ``widen``.

    Every payload is parsed and checked first; then the coded tensors are decoded a batch at a time
    (:func:`rans.batches`: each batch's streams in lockstep), and each tensor is finished, checked against its
    ``data_crc32`` (where given and asked) and widened before the next batch starts, so the scratch of a
    decode never exceeds one batch's (FORMAT.md 10.5 states the peak this gives).
    """
    out: dict[str, np.ndarray] = {}
    pending: list[tuple[box.Entry, codec.Pending, int]] = []
    for e in c.entries:
        what = f"{c.path}: tensor {e.name!r}"
        buf = c.payload(e)
        if e.encoding == "raw":
            out[e.name] = box.to_array(c, e)
        elif e.encoding == "packed":
            out[e.name] = codec.decode_packed(buf, e.shape, what)
        elif e.encoding == "f32-rans":
            pending.append((e, codec.parse_f32(buf, e.shape, what), e.count))
        elif e.encoding == "planes":
            job, finish = planes.parse(buf, e.shape, e.dtype, what)
            view = box.NUMPY[e.dtype]

            def shaped(f: Callable[[], np.ndarray] = finish, v: str = view, s: tuple[int, ...] = e.shape) -> np.ndarray:
                return f().view(v).reshape(s)

            pending.append((e, codec.Pending([job], shaped), e.count))
        else:
            pend = codec.parse_kernels(buf, e.shape, e.encoding == "rans-ref", what)
            pending.append((e, pend, pend.jobs[0].n))
    for e in c.entries:
        if e.name in out:
            out[e.name] = _checked(c, e, out[e.name], verify_checksums, widen)
    for batch in rans.batches(pending, n_of=lambda t: t[2]):
        jobs = [j for _, pend, _ in batch for j in pend.jobs]
        rans.decode_jobs([j for j in jobs if isinstance(j, rans.Job)])  # the batch's rANS streams in lockstep,
        planes_decode.decode_jobs([j for j in jobs if isinstance(j, PlaneJob)])  # its planes streams in another
        for e, pend, _ in batch:
            out[e.name] = _checked(c, e, pend.finish(), verify_checksums, widen)
    return {e.name: out[e.name] for e in c.entries}


def _checked(c: box.Container, e: box.Entry, arr: np.ndarray, verify: bool, widen: frozenset[str]) -> np.ndarray:
    """``arr`` after its ``data_crc32`` check; as float32 if its dtype is in ``widen`` (bf16: exact, in place)."""
    if verify and e.data_crc32 is not None and data_crc32(arr, e.dtype) != e.data_crc32:
        raise FormatError(
            f"{c.path}: the decoded data of tensor {e.name!r} does not match its checksum "
            "(field 'data_crc32'); the file is corrupt or the decoder is wrong"
        )
    if e.dtype not in widen:
        return arr
    if e.dtype == "bf16":  # from_bfloat16_bits, with the shift in place: no second tensor-sized temporary
        wide = arr.astype(np.uint32)
        wide <<= np.uint32(16)
        return wide.view(np.float32).reshape(e.shape)
    return arr.astype(np.float32)
