"""A training run folder (the training code's ``--save`` folder): which file in it is the model, and what its
``log.txt`` says about ``--binarize``.

The training code writes ``checkpoint.pth.tar`` and a ``log.txt`` of one JSON dict per line (its options, then
one entry per epoch) into one folder. A checkpoint doesn't record whether it was trained with ``--binarize``
(latent float weights look the same either way), so the ``log.txt`` beside a torch file says it. Both are
read as files from strangers: a bounded folder listing, a bounded log, no deep JSON.

This module knows no format: :func:`resolve` is handed the test that recognises a model file (the registry's
``binexport.formats.resolve`` passes its own), so it sits below every format and the registry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from binexport.errors import InputError
from binexport.fileio import read_head, shown

#: The file the training code's ``--save`` folder holds (beside its ``log.txt``): taken first from a run folder.
RUN_CHECKPOINT = "checkpoint.pth.tar"
#: The training log beside it.
RUN_LOG = "log.txt"
#: A run folder is scanned up to this many entries (a training run holds a handful).
MAX_RUN_FOLDER_ENTRIES = 1000
#: log.txt is read up to this size; a training log of 160 epochs is a few hundred KB.
MAX_LOG_BYTES = 16 * 2**20
_MAX_LOG_LINE = 64 * 2**10
_MAX_JSON_DEPTH = 32


def resolve(path: str | Path, is_model: Callable[[bytes], bool]) -> Path:
    """A model file as given; a training run folder as its one model file.

    In a folder, the training code's own ``checkpoint.pth.tar`` is taken first; otherwise the one regular,
    non-hidden file whose first 64 bytes ``is_model`` accepts.

    Args:
        path: a file, or a folder holding exactly one model file.
        is_model: True for the leading bytes of a file some reader can read (the registry's sniffs).

    Returns:
        The file to read (``path`` itself where it is not a folder; missing files are left to the reader).

    Raises:
        InputError: a folder that can't be listed, is too large to be a run folder, holds no model file or
            several (they are named).

    Example:
        >>> resolve("logs/WRN-20-10-1bit_1234", lambda head: head.startswith(b"PK"))   # doctest: +SKIP
        PosixPath('logs/WRN-20-10-1bit_1234/checkpoint.pth.tar')
    """
    p = Path(path)
    if not os.fspath(p) or not p.is_dir():
        return p
    own = p / RUN_CHECKPOINT
    if own.is_file():
        return own
    try:
        entries = sorted(os.scandir(p), key=lambda e: e.name)
    except OSError as e:
        raise InputError(f"{p}: the folder can't be listed ({e.strerror or e})") from None
    if len(entries) > MAX_RUN_FOLDER_ENTRIES:
        raise InputError(f"{p}: a folder of {len(entries)} entries, not a training run folder; give the model file")
    found = [Path(e.path) for e in entries if not e.name.startswith(".") and _is_model_file(e, is_model)]
    if len(found) == 1:
        return found[0]
    names = ", ".join(f.name for f in found[:8]) + (", ..." if len(found) > 8 else "")
    if not found:
        raise InputError(
            f"{p}: is a directory with no model file in it (expected a training run folder holding "
            f"{RUN_CHECKPOINT}, or one checkpoint, packed, .bwn or .mat file); give the file"
        )
    raise InputError(
        f"{p}: is a directory with {len(found)} model files ({names}) and no {RUN_CHECKPOINT}; give the one you mean"
    )


def _is_model_file(entry: os.DirEntry[str], is_model: Callable[[bytes], bool]) -> bool:
    """A regular file whose first bytes a reader recognises."""
    try:
        if not entry.is_file():
            return False
        head = read_head(Path(entry.path), 64)
    except (OSError, InputError):
        return False
    return bool(head) and is_model(head)


def logged_binarize(checkpoint: Path) -> bool | None:
    """What the ``log.txt`` beside ``checkpoint`` says about ``--binarize``: True, False, or None (no log, or
    no line says).

    Only lines that are flat JSON dicts count (the training code's entries); any line with a boolean
    ``"binarize"`` is read, and they must agree.

    Raises:
        InputError: the log is over :data:`MAX_LOG_BYTES`, can't be read, or its lines disagree.

    Example:
        >>> logged_binarize(Path("logs/WRN-20-10-1bit_1234/checkpoint.pth.tar"))   # doctest: +SKIP
        True
    """
    log = checkpoint.parent / RUN_LOG
    if not log.is_file():
        return None
    seen: set[bool] = set()
    try:
        if not log.stat().st_size <= MAX_LOG_BYTES:
            raise InputError(
                f"{shown(log)}: larger than {MAX_LOG_BYTES >> 20} MiB, not a training log; pass "
                "--binarized or --full-precision"
            )
        with open(log, "rb") as f:
            raw = f.read(MAX_LOG_BYTES + 1)
    except OSError as e:
        raise InputError(
            f"{shown(log)}: can't be read ({e.strerror or e}); pass --binarized or --full-precision"
        ) from None
    for line in raw[:MAX_LOG_BYTES].decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line.startswith("{") or len(line) > _MAX_LOG_LINE or _json_depth(line) > _MAX_JSON_DEPTH:
            continue  # not a log entry of the training code (they are flat dicts of numbers)
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(entry, dict) and isinstance(entry.get("binarize"), bool):
            seen.add(entry["binarize"])
    if len(seen) > 1:
        raise InputError(f'{log}: lines disagree on "binarize"; pass --binarized or --full-precision')
    return seen.pop() if seen else None


def _json_depth(line: str) -> int:
    """Deepest nesting of brackets in a line (strings ignored), so json.loads never recurses deep."""
    depth = deepest = 0
    in_str = escaped = False
    for c in line:
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest
