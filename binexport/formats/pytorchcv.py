"""pytorchcv's pretrained 1-bit WRNs: the ``wrn20_10_1bit_*`` / ``wrn20_10_32bit_*`` state_dicts (read only).

pytorchcv (osmr's imgclsmob model zoo, ``pip install pytorchcv``) downloads them as bare state_dicts such as
``~/.torch/models/wrn20_10_1bit_cifar10-0326-e6140f8a.pth`` (it fetches ``<name>.pth.zip``, extracts it and
deletes the zip). Its ``CIFARWRN1bit`` (``pytorchcv/models/wrn1bit_cifar.py``) is the port's network with a
1-bit stem and a 1-bit 1x1 head followed by an affine BN: architecture family ``pytorchcv``. Every conv is
stored as float latent weights, binarised by the 1-bit forward as ``sqrt(2 / fan_in) * sign(w)``; the 32-bit
models are the same network with the latent weights used as they are. Both have the same keys, and latent
floats don't say which forward they belong to, so the caller says (``--binarized`` / ``--full-precision``);
the file name is never read.

The container is a torch file: the ``checkpoint`` format's sniff claims it, :mod:`.torchfile` (the one safe
``torch.load``) reads it into a raw record, and the ``checkpoint`` reader hands a record with these keys to
:func:`from_record`; :func:`read` reads this layout only. ``binexport.load`` reads either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from binexport.errors import InputError
from binexport.fileio import shown
from binexport.formats import torchfile
from binexport.model import Arch, Model, Source, binarize

#: ``Source.layout`` of these files.
LAYOUT = "pytorchcv-state-dict"
#: Keys only pytorchcv's CIFAR WRN-1bit has: its stem conv and its 1x1 head conv.
_MARKERS = ("features.init_block.weight", "output.final_conv.conv.weight")
_N = r"([1-9]\d{0,3})"  # stage / unit numbers count from 1
_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"features\.init_block\.weight"), lambda m: "conv0"),
    (
        re.compile(rf"features\.stage{_N}\.unit{_N}\.body\.conv([12])\.conv\.weight"),
        lambda m: f"group{int(m[1]) - 1}.block{int(m[2]) - 1}.conv{int(m[3]) - 1}",
    ),
    (
        re.compile(rf"features\.stage{_N}\.unit{_N}\.body\.conv([12])\.bn\.(\w+)"),
        lambda m: f"group{int(m[1]) - 1}.block{int(m[2]) - 1}.bn{int(m[3]) - 1}.{m[4]}",
    ),
    (re.compile(r"features\.post_activ\.bn\.(\w+)"), lambda m: f"bn.{m[1]}"),
    (re.compile(r"output\.final_conv\.conv\.weight"), lambda m: "conv_last"),
    (re.compile(r"output\.final_conv\.bn\.(\w+)"), lambda m: f"bn_last.{m[1]}"),
)
_BACK: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(r"group(\d+)\.block(\d+)\.conv([01])"),
        lambda m: f"features.stage{int(m[1]) + 1}.unit{int(m[2]) + 1}.body.conv{int(m[3]) + 1}.conv.weight",
    ),
    (
        re.compile(r"group(\d+)\.block(\d+)\.bn([01])\.(\w+)"),
        lambda m: f"features.stage{int(m[1]) + 1}.unit{int(m[2]) + 1}.body.conv{int(m[3]) + 1}.bn.{m[4]}",
    ),
    (re.compile(r"conv0"), lambda m: "features.init_block.weight"),
    (re.compile(r"conv_last"), lambda m: "output.final_conv.conv.weight"),
    (re.compile(r"bn\.(\w+)"), lambda m: f"features.post_activ.bn.{m[1]}"),
    (re.compile(r"bn_last\.(\w+)"), lambda m: f"output.final_conv.bn.{m[1]}"),
)
#: How to tell a 1-bit file from a full-precision one, for the refusal.
HOW_TO_TELL = (
    "pytorchcv's 1-bit (wrn20_10_1bit_*) and full-precision (wrn20_10_32bit_*) models have the same "
    "keys and float latent weights, so the file can't say which it is; pass --binarized for a "
    "wrn20_10_1bit_* download or --full-precision for a wrn20_10_32bit_* one (pytorchcv names the "
    "file after the model, e.g. wrn20_10_1bit_cifar10-0326-e6140f8a.pth)"
)


def matches(keys: object) -> bool:
    """True for a state_dict with pytorchcv's WRN-1bit stem or head key (DataParallel prefix already removed)."""
    return isinstance(keys, (dict, set, list, tuple)) and any(k in keys for k in _MARKERS)


def canonical_name(key: str) -> str | None:
    """The binexport tensor name of a pytorchcv key (``features.stage2.unit1.body.conv1.conv.weight`` ->
    ``group1.block0.conv0``), or None for a key the network doesn't have."""
    for pattern, name in _RULES:
        m = pattern.fullmatch(key)
        if m:
            return name(m)
    return None


def pytorchcv_key(name: str) -> str:
    """The pytorchcv key of a binexport tensor name (the inverse of :func:`canonical_name`), for messages."""
    for pattern, key in _BACK:
        m = pattern.fullmatch(name)
        if m:
            return key(m)
    return name


def read(path: str | Path, binarized: bool | None = None, strict: bool = True) -> Model:
    """A Model of family ``pytorchcv`` from one of pytorchcv's WRN-1bit state_dicts.

    Args:
        path: the ``.pth`` pytorchcv downloaded (``~/.torch/models/wrn20_10_1bit_cifar10-0326-e6140f8a.pth``).
        binarized: True for a ``wrn20_10_1bit_*`` file, False for a ``wrn20_10_32bit_*`` one.
        strict: refuse where ``binarized`` is None (else read as full precision, ``binarized_from`` unknown).

    Raises:
        InputError: another torch layout, keys or shapes of another network, or no ``binarized`` when strict.

    Example:
        >>> m = read("wrn20_10_1bit_cifar100-1904-149860c8.pth", binarized=True)   # doctest: +SKIP
        >>> m.arch.name, m.arch.family, m.source.format                            # doctest: +SKIP
        ('WRN-20-10', 'pytorchcv', 'pytorchcv')
    """
    rec = torchfile.load(path)
    if rec.bit_tensors or not matches(rec.arrays):
        try:
            what = f" of the {Arch.infer({k: v.shape for k, v in rec.arrays.items()}).label}"
        except InputError:
            what = ""
        layout = torchfile.LAYOUT_PACKED if rec.bit_tensors else rec.layout
        raise InputError(
            f"{path}: expected one of pytorchcv's WRN-1bit state_dicts (keys {_MARKERS[0]!r}, ...), "
            f"found a {layout}{what}"
        )
    return from_record(rec, binarized, strict)


def _check_values(p: Path, key: str, arr: np.ndarray) -> None:
    """Refuse a tensor no pytorchcv checkpoint holds: a weight or BN statistic that is not floating point (only
    the BN ``num_batches_tracked`` counters are integers), or one holding NaN or infinity (a binarised NaN has no
    sign, and a non-finite statistic turns every logit into NaN)."""
    if key.endswith(".num_batches_tracked"):
        return
    if arr.dtype.kind != "f":
        raise InputError(
            f"{shown(p)}: {key!r} has dtype {arr.dtype}; a pytorchcv WRN-1bit state_dict stores its weights and "
            "BN statistics as float32 (only num_batches_tracked is an integer)"
        )
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InputError(
            f"{shown(p)}: {key!r} holds {bad:,} NaN or infinite value{'s' * (bad != 1)}; a pytorchcv "
            "checkpoint's weights and BN statistics are finite (the file is corrupt or not a trained model)"
        )


def from_record(rec: torchfile.TorchRecord, binarized: bool | None, strict: bool) -> Model:
    """The Model of a torch record :func:`matches` found pytorchcv keys in (the ``checkpoint`` reader's dispatch).

    Raises:
        InputError: keys or shapes of another network, non-float or non-finite values, or no ``binarized``
            when ``strict``.
    """
    p, arrays, file_size = rec.path, rec.arrays, rec.size
    renamed: dict[str, np.ndarray] = {}
    foreign = []
    for key, arr in arrays.items():
        name = canonical_name(key)
        if name is None:
            foreign.append(key)
        else:
            _check_values(p, key, arr)
            renamed[name] = arr
    if foreign:
        raise InputError(
            f"{shown(p)}: a pytorchcv state_dict, but not of its CIFAR WRN-1bit (wrn1bit_cifar): "
            f"unexpected key(s) {', '.join(repr(k) for k in foreign[:3])}"
            + (f" (and {len(foreign) - 3} more)" if len(foreign) > 3 else "")
            + "; binexport reads wrn20_10_1bit_* and wrn20_10_32bit_* models"
        )
    try:
        arch = Arch.infer({k: tuple(v.shape) for k, v in renamed.items()}, "pytorchcv")
    except InputError as e:
        msg = re.sub(r"'([\w.]+)'", lambda m: repr(pytorchcv_key(m[1])), str(e))
        raise InputError(f"{shown(p)}: not a usable pytorchcv WRN-1bit state_dict: {msg}") from None
    if binarized is None:
        if strict:
            raise InputError(f"{shown(p)}: {HOW_TO_TELL}")
        mode, told_by = False, "unknown"
    else:
        mode, told_by = binarized, "option"
    breakdown = torchfile.breakdown(renamed, arch.kinds, file_size, binarized=mode)
    source = Source("pytorchcv", str(p), file_size, "", breakdown, LAYOUT)
    meta = {"binarized_from": told_by}
    if told_by == "unknown":  # what inspect says instead of the training checkpoint's "no log.txt"
        meta["binarized_unknown"] = "the file can't say: pass --binarized or --full-precision"
    model = Model(arch, False, renamed, {}, 0, source, meta)
    return binarize(model) if mode else model
