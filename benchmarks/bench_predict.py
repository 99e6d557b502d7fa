"""``binexport predict`` on N PNG files vs a bare ONNX Runtime session on the same images, already decoded.

    python benchmarks/bench_predict.py MODEL.onnx [--images N] [--repeat R]

Two sets of N PNGs, written once into a temporary folder: the shared CIFAR-10 test images as they are (32x32,
repeated to N) and the same images blown up to 640x480 (a phone-photo-sized file that must be shrunk). Per set,
interleaved R times (the median is kept):

- ``predict``: ``binexport.predict(MODEL, paths, top_k=5)`` in-process: open the file (bounds, session), decode
  each PNG with binexport's bounded reader, resize to 32x32, feed the model's input kind, softmax, top-5, names;
- ``decode``: ``binexport.verbs.predict.load_images(paths)`` alone (the decode + resize part of the above);
- ``bare``: ``onnxruntime.InferenceSession(MODEL)`` and one ``run`` on the 32x32 pixels already decoded in memory
  (what a user with the pixels at hand would write), then ``argmax``;
- ``run``: that ``run`` alone, on a session opened beforehand (the inference itself).

``predict - bare`` is binexport's overhead (bounds, decode, resize, top-k); the rows are ratios measured side by side. Prints markdown for
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import struct
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

import binexport
from binexport.data import normalize
from binexport.data.png import read_png
from binexport.runtimes import select_input
from binexport.verbs.predict import load_images

SAMPLES = Path(__file__).resolve().parents[1] / "../shared/realdata/cifar10-samples"


def _png(img: np.ndarray) -> bytes:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    samples = sorted(SAMPLES.glob("*.png"))
    kind = binexport.predict(a.model, samples[:1]).input  # the file's own input kind
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"model {Path(a.model).name} ({kind}); N = {a.images}; median of {a.repeat} interleaved rounds\n")
    print("| images | predict s | decode+resize s | bare ORT s | run only s | predict / bare | overhead per image |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as d:
        for size in ((32, 32), (480, 640)):
            paths = []
            for i in range(a.images):
                img = read_png(samples[i % len(samples)])
                if size != (32, 32):
                    img = np.repeat(np.repeat(img, size[0] // 32, 0), size[1] // 32, 1)
                p = Path(d) / f"{size[1]}x{size[0]}_{i}.png"
                p.write_bytes(_png(img))
                paths.append(p)
            pixels, _ = load_images(paths)
            x = select_input(kind, pixels, normalize(pixels))

            def bare(x: np.ndarray = x) -> None:
                s = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
                s.run(None, {s.get_inputs()[0].name: x})[0].argmax(axis=1)

            opened = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
            feed = {opened.get_inputs()[0].name: x}
            runs: dict[str, list[float]] = {"predict": [], "decode": [], "bare": [], "run": []}
            for _ in range(a.repeat):
                runs["predict"].append(_timed(lambda paths=paths: binexport.predict(a.model, paths)))  # type: ignore[misc]
                runs["decode"].append(_timed(lambda paths=paths: load_images(paths)))  # type: ignore[misc]
                runs["bare"].append(_timed(bare))
                runs["run"].append(_timed(lambda feed=feed, s=opened: s.run(None, feed)))  # type: ignore[misc]
            med = {k: statistics.median(v) for k, v in runs.items()}
            print(
                f"| {a.images} x {size[1]}x{size[0]} PNG | {med['predict']:.3f} | {med['decode']:.3f} | "
                f"{med['bare']:.3f} | {med['run']:.3f} | {med['predict'] / med['bare']:.2f}x | "
                f"{1e3 * (med['predict'] - med['bare']) / a.images:.2f} ms |"
            )


if __name__ == "__main__":
    main()
