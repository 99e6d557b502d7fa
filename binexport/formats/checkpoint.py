"""PyTorch checkpoints as the training code writes them, and every other torch file layout: read-only.

The ``checkpoint`` format is the torch container (``torch.save``, zip or legacy; its sniff claims every torch
file). Its reader loads the file once through :mod:`.torchfile` (the one safe ``torch.load``) and dispatches on
what the record holds, down to the room of each layout:

- uint8 packed bits (``packed-checkpoint``): the published packed checkpoint, :func:`.packed.from_record`;
- pytorchcv's WRN-1bit keys (``pytorchcv-state-dict``): :func:`.pytorchcv.from_record`;
- otherwise a training checkpoint (state_dict + optimizer + scheduler + epoch) or a bare state_dict, read here,
  with the ``log.txt`` beside it (:mod:`.runfolder`) saying whether it was trained with ``--binarize``.

The layouts never import this module or each other: the dispatch runs one way, container to layout.
binexport writes deployment formats, not training state, so there is no writer.
"""

from __future__ import annotations

from pathlib import Path

from binexport.errors import InputError
from binexport.formats import packed, pytorchcv, runfolder, torchfile
from binexport.model import Arch, Model, Source, binarize


def read(path: str | Path, binarized: bool | None = None, strict: bool = True) -> Model:
    """A Model from any torch layout binexport knows (training checkpoint, state_dict, packed, pytorchcv).

    Args:
        path: the torch file.
        binarized: overrides what ``log.txt`` beside the file says about ``--binarize`` (not used for a packed
            checkpoint, which is 1-bit by construction).
        strict: where neither ``binarized`` nor ``log.txt`` tells, refuse rather than read as full precision
            (``metadata['binarized_from'] = 'unknown'``).

    Returns:
        The Model; ``model.source.format`` names the layout's format (``checkpoint``, ``packed``, ``pytorchcv``)
        and ``model.source.layout`` the layout.

    Raises:
        InputError: what :func:`.torchfile.load` refuses; tensors of no known WRN; no word on ``--binarize``
            when ``strict``.

    Example:
        >>> read("logs/WRN-20-10-1bit_1234/checkpoint.pth.tar").source.layout     # doctest: +SKIP
        'training-checkpoint'
    """
    rec = torchfile.load(path)
    if rec.bit_tensors:  # uint8 bits are packed whatever wraps them; binarising them again would corrupt them
        return packed.from_record(rec)
    if pytorchcv.matches(rec.arrays):
        return pytorchcv.from_record(rec, binarized, strict)
    return from_record(rec, binarized, strict)


def from_record(rec: torchfile.TorchRecord, binarized: bool | None, strict: bool) -> Model:
    """The Model of a training checkpoint or bare state_dict of the training code (float tensors).

    Raises:
        InputError: tensors of no known WRN; no word on ``--binarize`` (``binarized``, ``log.txt``) when strict.
    """
    p = rec.path
    arch = Arch.infer({k: v.shape for k, v in rec.arrays.items()})
    if binarized is not None:
        mode: bool | None
        mode, told_by = binarized, "option"
    else:
        mode = runfolder.logged_binarize(p)
        told_by = "unknown" if mode is None else runfolder.RUN_LOG
    if mode is None:
        if strict:
            raise InputError(
                f"{p}: can't tell whether this model was trained with --binarize: the checkpoint doesn't say and "
                "there is no log.txt beside it; pass --binarized or --full-precision"
            )
        mode = False
    parts = torchfile.breakdown(rec.arrays, arch.kinds, rec.size, binarized=mode, extra=rec.extra)
    source = Source("checkpoint", str(p), rec.size, "", parts, rec.layout)
    model = Model(arch, False, rec.arrays, {}, 0, source, {"binarized_from": told_by})
    return binarize(model) if mode else model
