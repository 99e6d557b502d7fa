"""The PyTorch reference runtime: the SPEC's forward pass over an in-memory model.

Binarised weights are used as ``scale * sign`` exactly as at training time,
so this is the model the user trained, whatever file it came from. On CUDA the
whole input stays on the GPU where it fits, and TF32 is off while it runs:
TF32 rounds float32 convolutions to 10 mantissa bits, which the 1e-4
tolerance would (rightly) catch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from binexport.model import Model
from binexport.runtimes.base import WARMUP, Progress, Runtime, model_input_kind

#: ``tap(name, activation)``: names are ``x`` (the input, pixels or normalised), ``h0`` (conv0 output), ``<block>a`` (relu(bn0) = conv0's input),
#: ``<block>b`` (relu(bn1) = conv1's input), ``<block>t`` (conv1's output), ``<block>h`` (after the residual add),
#: ``last.a`` (relu(bn) = conv_last's input) and ``last.y`` (bn_last's output), where ``<block>`` is
#: ``group{g}.block{b}.`` (:attr:`binexport.arch.Block.prefix`).
Tap = Callable[[str, torch.Tensor], None]


class WRNReference(torch.nn.Module):
    """``WRN_McDonnell`` in inference mode, with every tensor as a buffer, in each variant of :class:`Arch`.

    The port normalises outside and has a float conv0 and head; McDonnell's models take raw 0..255 pixels
    through an affine input BN, have 1-bit conv0 and head, and average their shortcut pools over real pixels
    only; the Keras one pads its stride-2 windows TF-style (0 before, 1 after). pytorchcv's is the port with a
    1-bit conv0 and 1-bit conv_last (then its affine bn_last), on inputs normalised with pytorchcv's mean/std.
    """

    def __init__(self, model: Model, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.arch = model.arch
        for spec in model.arch.specs():
            arr = model.dense(spec.name) if spec.kind != "bn" or not spec.name.endswith("tracked") else None
            if arr is None:
                continue
            t = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True)).to(dtype)
            self.register_buffer(spec.name.replace(".", "__"), t)

    def _p(self, name: str) -> torch.Tensor:
        return getattr(self, name.replace(".", "__"))

    def _bn(self, x: torch.Tensor, name: str) -> torch.Tensor:
        affine = hasattr(self, name.replace(".", "__") + "__weight")
        return F.batch_norm(
            x,
            self._p(name + ".running_mean"),
            self._p(name + ".running_var"),
            self._p(name + ".weight") if affine else None,
            self._p(name + ".bias") if affine else None,
            training=False,
            eps=self.arch.bn_eps,
        )

    def _bn_relu(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.relu(self._bn(x, name))

    def _conv(self, x: torch.Tensor, name: str, stride: int = 1) -> torch.Tensor:
        w = self._p(name)
        top, left, bottom, right = self.arch.pads(w.shape[-1], stride)
        if (top, left) == (bottom, right):
            return F.conv2d(x, w, stride=stride, padding=top)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), w, stride=stride)

    def _downsample(self, h: torch.Tensor) -> torch.Tensor:
        """avgpool 3x3 s2 (padding and divisor as the variant says), then as many zero channels after it."""
        top, left, bottom, right = self.arch.pads(3, 2)
        include = self.arch.pool_count_include_pad
        if (top, left) == (bottom, right):
            d = F.avg_pool2d(h, kernel_size=3, stride=2, padding=top, count_include_pad=include)
        else:
            s = F.avg_pool2d(F.pad(h, (left, right, top, bottom)), 3, 2, divisor_override=1)
            ones = F.pad(torch.ones_like(h[:1, :1]), (left, right, top, bottom))
            d = s / (9.0 if include else F.avg_pool2d(ones, 3, 2, divisor_override=1))
        return torch.cat([d, torch.zeros_like(d)], dim=1)

    def forward(self, x: torch.Tensor, tap: Tap | None = None) -> torch.Tensor:
        """Logits; ``tap(name, tensor)`` sees every activation an int8 graph quantizes (see :data:`TAPS`)."""

        def see(name: str, t: torch.Tensor) -> torch.Tensor:
            if tap is not None:
                tap(name, t)
            return t

        x = see("x", x)
        if self.arch.input_bn:
            x = self._bn_relu(x, "input_bn") if self.arch.input_relu else self._bn(x, "input_bn")
        h = see("h0", self._conv(x, "conv0"))
        for blk in self.arch.blocks():
            p = blk.prefix
            a = see(p + "a", self._bn_relu(h, p + "bn0"))
            t = self._conv(a, p + "conv0", blk.stride)
            t = self._conv(see(p + "b", self._bn_relu(t, p + "bn1")), p + "conv1")
            see(p + "t", t)
            if blk.shortcut:
                h = self._downsample(h)
            h = see(p + "h", h + t)
        h = see("last.a", self._bn_relu(h, "bn"))
        h = self._bn(self._conv(h, "conv_last"), "bn_last")
        return see("last.y", h).mean(dim=(2, 3))


class TorchRuntime(Runtime):
    """The reference forward of a :class:`Model` on ``device`` ('cpu' or 'cuda').

    Its input is float32 NCHW in the model's own convention (:func:`binexport.runtimes.base.model_input_kind`):
    normalised for the port, raw 0..255 pixels for a model with an input BN.
    """

    name = "torch"

    def __init__(self, model: Model, device: str = "cpu", threads: int = 0) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model = model
        self.input_kind = model_input_kind(model.arch)
        self.device = device
        self.provider = f"torch:{device}"
        self.net = WRNReference(model).to(device).eval()

    def timed_logits(
        self,
        x: np.ndarray,
        batch_size: int = 256,
        progress: Progress | None = None,
        warmup: int = WARMUP,
        label: str = "",
        offset: int = 0,
        total: int | None = None,
    ) -> tuple[np.ndarray, float]:
        with torch.inference_mode(), exact_cuda(self.device):
            return super().timed_logits(x, batch_size, progress, warmup, label, offset, total)

    def time_calls(self, x: np.ndarray, iters: int) -> list[float]:
        with torch.inference_mode(), exact_cuda(self.device):
            return super().time_calls(x, iters)

    def _place(self, x: np.ndarray, batch_size: int) -> list[Any]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.device == "cuda" and t.numel() * 4 < torch.cuda.mem_get_info()[0] // 2:
            t = t.to(self.device)  # the whole set stays on the GPU: no per-batch copies
        return [t[i : i + batch_size] for i in range(0, len(t), batch_size)]

    def _run(self, batch: Any) -> Any:
        return self.net(batch.to(self.device, non_blocking=True))

    def _finish(self, outs: list[Any], n: int) -> np.ndarray:
        return torch.cat(outs).float().cpu().numpy()[:n]

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.model.arch.num_classes), np.float32)

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def activation_ranges(
        self, x: np.ndarray, percentile: float = 99.999, batch_size: int = 64, progress: Progress | None = None
    ) -> dict[str, tuple[float, float]]:
        """Per tapped activation (see :data:`Tap`), the (low, high) percentiles over every value of every image.

        The ``percentile``-th largest and smallest values are found exactly, batch by batch, by keeping only
        the ``k`` most extreme values seen so far (``k`` = the number of values beyond the percentile), so
        memory stays at one batch whatever the sample size. ``percentile=100`` gives min / max.
        """
        n = len(x)
        hi: dict[str, torch.Tensor] = {}
        lo: dict[str, torch.Tensor] = {}
        ks: dict[str, int] = {}

        def tap(name: str, t: torch.Tensor) -> None:
            flat = t.detach().reshape(-1).float()
            if name not in ks:
                ks[name] = max(1, int(np.ceil(flat.numel() / len(t) * n * (100.0 - percentile) / 100.0)))
            k = ks[name]
            for store, v in ((hi, flat), (lo, -flat)):
                cand = torch.cat([store[name], v]) if name in store else v
                store[name] = torch.topk(cand, min(k, cand.numel()), sorted=False).values

        with torch.inference_mode(), exact_cuda(self.device):
            for i in range(0, n, batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)).to(self.device)
                self.net(xb, tap)
                if progress is not None:
                    progress("calibration", min(i + batch_size, n), n)
        return {name: (-float(lo[name].min()), float(hi[name].min())) for name in hi}


@contextmanager
def exact_cuda(device: str) -> Iterator[None]:
    """TF32 off while running on CUDA: it rounds float32 convs to 10 mantissa bits."""
    if device != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def reference_logits(model: Model, x: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Float32 logits of the reference on NCHW input in the model's convention (``TorchRuntime(...).logits``)."""
    return TorchRuntime(model, device).logits(x, batch_size)
