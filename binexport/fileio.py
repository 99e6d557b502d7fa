"""Thin, atomic file helpers: inputs that are regular files, outputs that appear whole or not at all.

Outputs only ever replace regular files: ``os.replace`` onto a FIFO, a device
or a symlink to one would swap a special file for a plain one (as root,
``--json /dev/null`` would replace ``/dev/null``). A write that is killed by
SIGTERM or SIGHUP removes its temp file; one killed harder leaves it, and the
next write to the same output removes it (temp names carry the writer's PID).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from binexport.errors import InputError

#: Signals after which a half-written temp file is removed before the process dies as it would have.
_CLEANUP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def shown(path: str | os.PathLike[str] | bytes) -> str:
    """A path as one printable line: odd names (newlines, control characters, undecodable bytes) repr-escaped."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    if text.isprintable() and not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return repr(text)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_input(path: str | os.PathLike[str]) -> Path:
    """A readable regular file, or an InputError that says what is wrong.

    FIFOs and devices are refused before they are opened: reading one blocks
    forever or never ends.
    """
    if not os.fspath(path):
        raise InputError("the input path is empty; give a checkpoint or model file")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{shown(p)}: no such file; check the path") from None
    except OSError as e:
        raise InputError(f"{shown(p)}: can't be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{shown(p)}: is a directory, expected a checkpoint or model file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{shown(p)}: is {_kind(st.st_mode)}, expected a regular checkpoint or model file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{shown(p)}: not readable (permission denied)")
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
    """Refuse to clobber an existing output unless forced, and never replace a non-regular file.

    A symlink is judged by what it points to: one to a regular file (or to
    nothing) may be replaced, one to a FIFO, device or ``/proc/self/fd/1`` may not.
    """
    if not os.fspath(path):
        raise InputError("the output path is empty; give a file name with -o")
    p = Path(path)
    try:
        lst = os.lstat(p)
    except FileNotFoundError:
        lst = None
    except OSError as e:
        raise InputError(f"{shown(p)}: can't check the output path ({e.strerror or e})") from None
    if lst is not None:
        _refuse_special(p, lst)
        if not force:
            raise InputError(f"{shown(p)}: already exists; pass --force to replace it")
    if not p.parent.is_dir():
        raise InputError(f"{shown(p.parent)}: output folder does not exist")
    return p


def _refuse_special(p: Path, lst: os.stat_result) -> None:
    """InputError if ``p`` (whose lstat is ``lst``) is, or links to, anything but a regular file."""
    target = lst
    if stat.S_ISLNK(lst.st_mode):
        try:
            target = os.stat(p)
        except (FileNotFoundError, NotADirectoryError):
            return  # a dangling link: replacing the link itself harms nothing
        except OSError as e:
            raise InputError(
                f"{shown(p)}: a symlink whose target can't be checked ({e.strerror or e}); give a plain file name"
            ) from None
    if stat.S_ISDIR(target.st_mode):
        raise InputError(f"{shown(p)}: is a directory; give a file name for the output")
    if not stat.S_ISREG(target.st_mode):
        via = " (through a symlink)" if target is not lst else ""
        raise InputError(
            f"{shown(p)}: is {_kind(target.st_mode)}{via}; binexport only replaces regular files, "
            "so give the path of a regular file"
        )


def write_atomic(path: str | os.PathLike[str], data: bytes, check: Callable[[Path], None] | None = None) -> Path:
    """Write to a temp file beside ``path``, fsync, run ``check`` on it, then ``os.replace``.

    If anything fails (including ``check``, or SIGTERM/SIGHUP) the temp file is
    removed and an existing ``path`` is left untouched. The temp file is
    ``.NAME.<pid>.XXXX.tmp``: temp files of writers that died (by SIGKILL, a
    power cut) are removed here, by the next write to the same output.
    """
    p = Path(path)
    try:
        _refuse_special(p, os.lstat(p))
    except FileNotFoundError:
        pass
    remove_stale_temps(p)
    tmp: list[str] = []
    with _cleanup_on_signals(tmp):
        fd, name = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp", dir=p.parent)
        tmp.append(name)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an output gets the mode any new file gets
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if check is not None:
                check(Path(name))
            try:
                _refuse_special(p, os.lstat(p))  # it may have become a FIFO while we checked
            except FileNotFoundError:
                pass
            os.replace(name, p)
            tmp.clear()
        except BaseException:
            Path(name).unlink(missing_ok=True)
            tmp.clear()
            raise
    _fsync_dir(p.parent)
    return p


def _temp_pattern(p: Path) -> re.Pattern[str]:
    return re.compile(re.escape(f".{p.name}.") + r"(\d+)\.[^/]*\.tmp", re.DOTALL)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.NAME.<pid>.*.tmp`` beside ``path`` whose writer process is gone; returns what was removed."""
    p = Path(path)
    pattern = _temp_pattern(p)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(p.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False) or _alive(int(m.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0 or pid > 2**22:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process: alive, not ours to judge
    return True


class _cleanup_on_signals:
    """While active, SIGTERM/SIGHUP remove the temp files named in ``tmp``, then act as they would have.

    Only the main thread can install signal handlers; elsewhere this does
    nothing (stale temp files are then removed by the next write).
    """

    def __init__(self, tmp: list[str]) -> None:
        self.tmp = tmp
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _cleanup_on_signals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in _CLEANUP_SIGNALS:
            old = signal.getsignal(sig)
            if old is signal.SIG_IGN or old is None:
                continue  # e.g. nohup: the signal will not stop us, so the temp file is not orphaned
            self.previous[sig] = old
            signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)
        self.previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        for name in self.tmp:
            try:
                os.unlink(name)
            except OSError:
                pass
        self.tmp.clear()
        old = self.previous.get(signum, signal.SIG_DFL)
        self.__exit__()
        if callable(old):
            old(signum, frame)
            raise SystemExit(128 + signum)  # the write must not go on: its temp file is gone
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # die by the signal, as the sender expects


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
