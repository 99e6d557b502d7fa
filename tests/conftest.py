"""Fixtures every test folder shares: real data (skipped where absent), tiny runs and artifact sets built once
per session, training-run folders, a loopback HTTP server.

Plain helpers (paths, the CLI runners, the refusal check, tiny models, hostile-file builders) are in
``tests/support/``; this file puts ``tests/`` on ``sys.path`` so every test imports them as ``support.X``.
"""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.paths import REAL_PACKED, REALDATA  # noqa: E402


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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One WRN-8-1 (10 classes, 1-bit) training run for the whole session: its checkpoint.pth.tar (log.txt
    beside it). Read it, never write into its folder: copy the bytes where a test needs its own run."""
    from binexport.data.synth import make_arch, write_training_run

    return write_training_run(tmp_path_factory.mktemp("tiny-run") / "run", make_arch(8, 1, 10), binarize=True)


ArtifactFactory = Callable[..., dict[str, Path]]
ONNX_NAMES = {"1-bit": "m.onnx", "float32": "m32.onnx", "float16": "m16.onnx"}  # the file names tests print


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> ArtifactFactory:
    """Factory: a tiny random model written as a packed checkpoint and ONNX files, built once per session per
    set of arguments. Returns ``{"packed": path, WEIGHTS: path, ...}`` (one ONNX file per ``onnx`` weights
    kind, e.g. ``"1-bit"``, ``"float32"``, ``"float16"``). Treat the files as read-only: they are shared.

    Example: ``artifacts(width=0.5, num_classes=100, seed=3, onnx=("1-bit", "float32"))``
    """
    from support.models import tiny_model

    from binexport import formats

    made: dict[tuple[object, ...], tuple[object, Path, dict[str, Path]]] = {}

    def _make(
        depth: int = 8, width: float = 0.5, num_classes: int = 10, seed: int = 0, onnx: tuple[str, ...] = ("1-bit",)
    ) -> dict[str, Path]:
        key = (depth, width, num_classes, seed)
        if key not in made:
            d = tmp_path_factory.mktemp(f"wrn-{depth}-{width}-{num_classes}-s{seed}")
            model = tiny_model(depth=depth, width=width, num_classes=num_classes, seed=seed)
            (d / "m.packed.pth.tar").write_bytes(formats.get("packed").write(model))
            made[key] = (model, d, {"packed": d / "m.packed.pth.tar"})
        model, d, files = made[key]
        for w in onnx:
            if w not in files:
                files[w] = d / ONNX_NAMES.get(w, f"m-{w}.onnx")
                files[w].write_bytes(formats.get("onnx").write(model, weights=w))
        return {k: v for k, v in files.items() if k == "packed" or k in onnx}

    return _make


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a training-run folder (checkpoint.pth.tar + log.txt) under tmp_path."""
    from binexport.data.synth import make_arch, write_training_run

    def _make(
        depth: int = 8, width: float = 1, num_classes: int = 10, binarize: bool = True, name: str = "run", **kw
    ) -> Path:
        return write_training_run(tmp_path / name, make_arch(depth, width, num_classes), binarize=binarize, **kw)

    return _make


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
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
