"""Fetch one file out of a published .tar.gz: md5 checked before anything is extracted, placed atomically.

The archive goes to a temp file beside the data and is deleted afterwards; the one member needed is read from
it, checked by the caller and written to a path of the caller's choosing, so no name inside the archive ever
reaches the filesystem. Nothing is kept from a download that fails any check.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from binexport.errors import InputError
from binexport.fileio import write_atomic

#: The largest archive fetched: the CIFAR archives are 163 MB (CIFAR-10) and 161 MB (CIFAR-100).
MAX_ARCHIVE_BYTES = 512 * 2**20


def fetch_member(
    url: str,
    member: str,
    md5: str,
    root: Path,
    dest: Path,
    *,
    check: Callable[[bytes, str], object],
    what: str,
    timeout: float = 60,
) -> Path:
    """Download ``url``, check its ``md5``, and write its ``member`` to ``dest`` once ``check`` accepts it.

    Args:
        url: the archive (http:// or https://).
        member: the path of the one file needed inside the archive.
        md5: the archive's published md5.
        root: the data root, created if absent; the archive is downloaded to a temp file in it.
        dest: where the member is written (atomically); its folder is created.
        check: called with the member's bytes and a name for messages; raises InputError to refuse them.
        what: what the archive is, for messages (``"the CIFAR archive"``).
        timeout: seconds per network read.

    Returns:
        ``dest``.

    Raises:
        InputError: a URL that isn't http(s), a failed or oversized download, a wrong md5, no such member, an
            unreadable archive, or what ``check`` raises.

    Example:
        >>> fetch_member(url, "cifar-10-batches-py/test_batch", md5, root, dest,
        ...              check=lambda raw, where: None, what="the CIFAR archive")   # doctest: +SKIP
    """
    if not url.startswith(("https://", "http://")):
        raise InputError(f"download URL {url!r}: expected http:// or https://")
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{url.rsplit('/', 1)[-1]}.", suffix=".part", dir=root)
    try:
        with open(fd, "wb") as f:
            digest = _fetch(url, f, timeout, what)
        if digest != md5:
            raise InputError(
                f"{url}: md5 {digest} does not match the published {md5}; the download is "
                "corrupt or not the official archive, and nothing was kept. Try again, or put the "
                f"archive's {member} under --data-root yourself"
            )
        raw = _read_member(Path(tmp), member, url)
        check(raw, f"{url}!{member}")  # refuse a bad file before it is placed
        dest.parent.mkdir(exist_ok=True)
        return write_atomic(dest, raw)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fetch(url: str, out: IO[bytes], timeout: float, what: str) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (scheme checked above)
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise InputError(f"{url}: larger than {MAX_ARCHIVE_BYTES >> 20} MiB; not {what}")
                md5.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        why = getattr(e, "reason", None) or e
        raise InputError(
            f"{url}: download failed ({why}); check the network, or set BINEXPORT_DATA_URL to a mirror"
        ) from None
    return md5.hexdigest()


def _read_member(archive: Path, member: str, url: str) -> bytes:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            info = tar.getmember(member)
            f = tar.extractfile(info) if info.isfile() else None
            if f is None:
                raise KeyError(member)
            return f.read()
    except KeyError:
        raise InputError(f"{url}: the archive has no file {member}") from None
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(f"{url}: not a readable .tar.gz ({e})") from None
