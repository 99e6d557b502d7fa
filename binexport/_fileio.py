"""Thin, atomic file helpers: outputs appear whole or not at all."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from binexport.errors import InputError


def check_input(path: str | os.PathLike[str]) -> Path:
    """A readable regular file, or an InputError that says what is wrong."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a checkpoint or model file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: not readable (permission denied)")
    return p


def read_head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_output(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse to clobber an existing output unless forced; the folder must exist."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file name for the output")
    if p.exists() and not force:
        raise InputError(f"{p}: already exists; pass --force to replace it")
    if not p.parent.exists():
        raise InputError(f"{p.parent}: output folder does not exist")
    return p


def write_atomic(path: str | os.PathLike[str], data: bytes,
                 check: Callable[[Path], None] | None = None) -> Path:
    """Write to a temp file beside ``path``, fsync, run ``check`` on it, then ``os.replace``.

    If anything fails (including ``check``) the temp file is removed and an
    existing ``path`` is left untouched.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an output gets the mode any new file gets
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(p.parent)
    return p


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
