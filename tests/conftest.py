"""Shared fixtures: real data (skipped where absent), training-run folders, a loopback HTTP server.

Plain helpers (paths, tiny models, CIFAR pickles) are in helpers.py.
"""

from __future__ import annotations

import http.server
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import REAL_PACKED, REALDATA  # noqa: E402


@pytest.fixture
def realdata() -> Path:
    if not REAL_PACKED.is_file():
        pytest.skip(f"real material absent: {REALDATA} (it lives in ../shared/realdata beside the checkout)")
    return REALDATA


@pytest.fixture(scope="session")
def real_packed() -> Path:
    if not REAL_PACKED.is_file():
        pytest.skip(f"real published checkpoint absent: {REAL_PACKED}")
    return REAL_PACKED


@pytest.fixture
def make_run(tmp_path: Path):
    """Factory: a training-run folder (checkpoint.pth.tar + log.txt) under tmp_path."""
    from binexport.data.synth import make_arch, write_training_run

    def _make(
        depth: int = 8, width: float = 1, num_classes: int = 10, binarize: bool = True, name: str = "run", **kw
    ) -> Path:
        return write_training_run(tmp_path / name, make_arch(depth, width, num_classes), binarize=binarize, **kw)

    return _make


@pytest.fixture
def server(tmp_path: Path):
    """Serves tmp_path/www on 127.0.0.1; yields (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/kriz", www
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
