"""The PyTorch reference runtime: the SPEC's forward pass over an in-memory model.

Binarised weights are used as ``scale * sign`` exactly as at training time,
so this is the model the user trained, whatever file it came from. On CUDA the
whole input stays on the GPU where it fits, and TF32 is off while it runs:
TF32 rounds float32 convolutions to 10 mantissa bits, which the 1e-4
tolerance would (rightly) catch.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from binexport.model import Model
from binexport.runtimes import INPUT_NCHW, Runtime


#: ``tap(name, activation)``: names are ``x``, ``h0`` (conv0 output), ``<block>a`` (relu(bn0) = conv0's input),
#: ``<block>b`` (relu(bn1) = conv1's input), ``<block>t`` (conv1's output), ``<block>h`` (after the residual add),
#: ``last.a`` (relu(bn) = conv_last's input) and ``last.y`` (bn_last's output), where ``<block>`` is
#: ``group{g}.block{b}.``.
Tap = Callable[[str, torch.Tensor], None]


class WRNReference(torch.nn.Module):
    """``WRN_McDonnell`` in inference mode, with every tensor as a buffer."""

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

    def _bn_relu(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.relu(F.batch_norm(x, self._p(name + ".running_mean"), self._p(name + ".running_var"),
                                   training=False, eps=1e-5))

    def forward(self, x: torch.Tensor, tap: Tap | None = None) -> torch.Tensor:
        """Logits; ``tap(name, tensor)`` sees every activation an int8 graph quantizes (see :data:`TAPS`)."""
        def see(name: str, t: torch.Tensor) -> torch.Tensor:
            if tap is not None:
                tap(name, t)
            return t

        h = see("h0", F.conv2d(see("x", x), self._p("conv0"), padding=1))
        for g in range(3):
            for b in range(self.arch.blocks_per_group):
                p = f"group{g}.block{b}."
                stride = 2 if (g > 0 and b == 0) else 1
                a = see(p + "a", self._bn_relu(h, p + "bn0"))
                t = F.conv2d(a, self._p(p + "conv0"), padding=1, stride=stride)
                t = F.conv2d(see(p + "b", self._bn_relu(t, p + "bn1")), self._p(p + "conv1"), padding=1)
                see(p + "t", t)
                if stride == 2:
                    d = F.avg_pool2d(h, kernel_size=3, stride=2, padding=1)
                    h = torch.cat([d, torch.zeros_like(d)], dim=1)
                h = see(p + "h", h + t)
        h = see("last.a", self._bn_relu(h, "bn"))
        h = F.conv2d(h, self._p("conv_last"))
        h = F.batch_norm(h, self._p("bn_last.running_mean"), self._p("bn_last.running_var"),
                         self._p("bn_last.weight"), self._p("bn_last.bias"), training=False, eps=1e-5)
        return see("last.y", h).mean(dim=(2, 3))


class TorchRuntime(Runtime):
    """The reference forward of a :class:`Model` on ``device`` ('cpu' or 'cuda'); input normalised NCHW float32."""

    name = "torch"
    input_kind = INPUT_NCHW

    def __init__(self, model: Model, device: str = "cpu", threads: int = 0) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model = model
        self.device = device
        self.provider = f"torch:{device}"
        self.net = WRNReference(model).to(device).eval()

    def timed_logits(self, x: np.ndarray, batch_size: int = 256, progress: Any = None,
                     warmup: int = 2) -> tuple[np.ndarray, float]:
        with torch.inference_mode(), exact_cuda(self.device):
            return super().timed_logits(x, batch_size, progress, warmup)

    def time_calls(self, x: np.ndarray, iters: int) -> list[float]:
        with torch.inference_mode(), exact_cuda(self.device):
            return super().time_calls(x, iters)

    def _place(self, x: np.ndarray, batch_size: int) -> list[Any]:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.device == "cuda" and t.numel() * 4 < torch.cuda.mem_get_info()[0] // 2:
            t = t.to(self.device)  # the whole set stays on the GPU: no per-batch copies
        return [t[i:i + batch_size] for i in range(0, len(t), batch_size)]

    def _run(self, batch: Any) -> Any:
        return self.net(batch.to(self.device, non_blocking=True))

    def _finish(self, outs: list[Any], n: int) -> np.ndarray:
        return torch.cat(outs).float().cpu().numpy()[:n]

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.model.arch.num_classes), np.float32)

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


    def activation_ranges(self, x: np.ndarray, percentile: float = 99.999, batch_size: int = 64,
                          progress: Any = None) -> dict[str, tuple[float, float]]:
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
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)).to(self.device)
                self.net(xb, tap)
                if progress is not None:
                    progress(min(i + batch_size, n), n)
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
    """Float32 logits of the reference on normalised NCHW input (a shortcut for ``TorchRuntime(...).logits``)."""
    return TorchRuntime(model, device).logits(x, batch_size)
