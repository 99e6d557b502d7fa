"""pytorchcv's WRN-20-10 1-bit: binexport's artifacts against pytorchcv's own module, side by side.

No pretrained pytorchcv weights can be downloaded here, so the model is pytorchcv's own
``wrn20_10_1bit_cifar100`` with random latent weights, its BN statistics set by running it in training mode
on random normalised images (so activations have the scale a trained net's have), saved as the state_dict
pytorchcv downloads. Measured, interleaved round after round so load from other jobs hits every side alike:
file size, time to a ready model, and batch throughput of

- pytorchcv's module (``torch.load`` + ``load_state_dict``; it binarises every conv on every forward),
- binexport's PyTorch reference read from the ``.bwn`` (sign bits expanded once at load),
- the 1-bit ONNX graph on ONNX Runtime (sign bits expanded once at session start),

and the largest logit difference of each binexport artifact to pytorchcv's module on the same images.

Usage: python benchmarks/bench_pytorchcv.py [--batch 16] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import binexport
from binexport.runtimes import select_input
from binexport.runtimes.ort import open_session
from binexport.runtimes.torch_ref import TorchRuntime

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2023, 0.1994, 0.2010], np.float32)


def make(path: Path) -> torch.nn.Module:
    from pytorchcv.models.wrn1bit_cifar import wrn20_10_1bit_cifar100

    torch.manual_seed(0)
    net = wrn20_10_1bit_cifar100()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
            if m.affine:
                torch.nn.init.normal_(m.weight, 1.0, 0.1)
                torch.nn.init.normal_(m.bias, 0.0, 0.1)
    net.train()
    with torch.no_grad():
        for _ in range(4):
            net(torch.randn(16, 3, 32, 32))
    net.eval()
    with torch.no_grad():  # pytorchcv's float32 init draws a few exact zeros, which its forward multiplies by
        zeros = 0  # sign(0) = 0 and one bit can't hold (binexport stores +1 and warns): keep them out
        for _name, p in net.named_parameters():
            if p.dim() == 4:
                zeros += int((p == 0).sum())
                p[p == 0] = 1e-6
    print(f"{zeros} exact-zero latent weights of the random init set to 1e-6")
    torch.save(net.state_dict(), path)
    return net


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp())
    pth = tmp / "wrn20_10_1bit_cifar100-random.pth"
    make(pth)
    bwn = binexport.pack(pth, tmp / "m.bwn", format="bwn", binarized=True).output
    onnx = binexport.export_onnx(pth, tmp / "m.onnx", weights="1-bit", binarized=True).output
    pixels = np.random.default_rng(0).integers(0, 256, (a.batch, 32, 32, 3), dtype=np.uint8)
    x = np.ascontiguousarray(((pixels / np.float32(255) - MEAN) / STD).astype(np.float32).transpose(0, 3, 1, 2))

    def load_pytorchcv():
        from pytorchcv.models.wrn1bit_cifar import wrn20_10_1bit_cifar100

        net = wrn20_10_1bit_cifar100()
        net.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True))
        net.eval()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()

        return run

    def load_bwn():
        rt = TorchRuntime(binexport.load(bwn), "cpu", a.threads)
        return lambda x: rt.logits(select_input(rt.input_kind, pixels[: len(x)], x), len(x))

    def load_onnx():
        rt = open_session(str(onnx), "cpu", a.threads)
        return lambda x: rt.logits(x, len(x))

    sides = {
        "pytorchcv module (.pth)": (pth, load_pytorchcv),
        "binexport torch reference (.bwn)": (bwn, load_bwn),
        "ONNX Runtime, 1-bit ONNX": (onnx, load_onnx),
    }
    runs, loads, times = {}, {k: [] for k in sides}, {k: [] for k in sides}
    for _ in range(2):  # load time: best of two, interleaved
        for k, (_, loader) in sides.items():
            t0 = time.perf_counter()
            runs[k] = loader()
            loads[k].append(time.perf_counter() - t0)
    outs = {k: run(x) for k, run in runs.items()}  # also the warm-up call
    for _ in range(a.rounds):
        for k, run in runs.items():
            t0 = time.perf_counter()
            run(x)
            times[k].append(time.perf_counter() - t0)
    ref = outs["pytorchcv module (.pth)"]
    base = a.batch / float(np.median(times["pytorchcv module (.pth)"]))
    print(
        f"WRN-20-10 1-bit, 100 classes, batch {a.batch}, {a.threads} threads, median of {a.rounds} interleaved rounds"
    )
    print("| runs | file | size (B) | load (s) | images/s | vs pytorchcv | max \\|Δ logit\\| vs pytorchcv |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for k, (path, _) in sides.items():
        ips = a.batch / float(np.median(times[k]))
        d = float(np.abs(outs[k] - ref).max())
        print(
            f"| {k} | {Path(path).name} | {Path(path).stat().st_size:,} | {min(loads[k]):.2f} | {ips:.1f} | "
            f"{ips / base:.2f}x | {d:.1e} |"
        )
    print(f"(largest |logit| {np.abs(ref).max():.2f})")


if __name__ == "__main__":
    main()
