"""The PyTorch reference: the SPEC's forward pass over an in-memory model.

Binarised weights are used as ``scale * sign`` exactly as at training time,
so this is the model the user trained, whatever file it came from.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from binexport.model import Model


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, self._p("conv0"), padding=1)
        for g in range(3):
            for b in range(self.arch.blocks_per_group):
                p = f"group{g}.block{b}."
                stride = 2 if (g > 0 and b == 0) else 1
                t = F.conv2d(self._bn_relu(h, p + "bn0"), self._p(p + "conv0"), padding=1, stride=stride)
                t = F.conv2d(self._bn_relu(t, p + "bn1"), self._p(p + "conv1"), padding=1)
                if stride == 2:
                    d = F.avg_pool2d(h, kernel_size=3, stride=2, padding=1)
                    h = torch.cat([d, torch.zeros_like(d)], dim=1)
                h = h + t
        h = self._bn_relu(h, "bn")
        h = F.conv2d(h, self._p("conv_last"))
        h = F.batch_norm(h, self._p("bn_last.running_mean"), self._p("bn_last.running_var"),
                         self._p("bn_last.weight"), self._p("bn_last.bias"), training=False, eps=1e-5)
        return h.mean(dim=(2, 3))


def reference_logits(model: Model, x: np.ndarray, batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """Float32 logits of the reference on normalised NCHW input."""
    net = WRNReference(model).to(device).eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)).to(device)
            outs.append(net(xb).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, model.arch.num_classes), np.float32)
