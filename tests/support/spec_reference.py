"""An independent PyTorch ``WRN_McDonnell`` written from the SPEC, for the tests only.

It takes the latent (or unpacked) float weights with canonical names and
binarises block convs as the training code does, so every reader and exporter
is checked against a real forward pass, not against binexport's own runtime.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _sign_scale(w: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2.0 / (w.shape[1] * w.shape[2] * w.shape[3])) * w.sign()


def spec_forward(params: dict[str, np.ndarray], x: np.ndarray, binarize: bool) -> np.ndarray:
    p = {
        k: torch.from_numpy(np.array(v, dtype=np.float32))
        for k, v in params.items()
        if not k.endswith("num_batches_tracked")
    }
    n = len({k.split(".")[1] for k in p if k.startswith("group0.")})

    def conv(h: torch.Tensor, name: str, stride: int = 1) -> torch.Tensor:
        w = _sign_scale(p[name]) if binarize else p[name]
        return F.conv2d(h, w, stride=stride, padding=1)

    def bn(h: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(
            h,
            p[name + ".running_mean"],
            p[name + ".running_var"],
            p.get(name + ".weight"),
            p.get(name + ".bias"),
            False,
            0.0,
            1e-5,
        )

    h = F.conv2d(torch.from_numpy(np.asarray(x, np.float32)), p["conv0"], padding=1)
    for g in range(3):
        for b in range(n):
            pre = f"group{g}.block{b}."
            o = F.relu(bn(h, pre + "bn0"))
            if g > 0 and b == 0:
                t = conv(o, pre + "conv0", stride=2)
                t = conv(F.relu(bn(t, pre + "bn1")), pre + "conv1")
                d = F.avg_pool2d(h, kernel_size=3, stride=2, padding=1)
                h = torch.cat([d, torch.zeros_like(d)], dim=1) + t
            else:
                t = conv(o, pre + "conv0")
                t = conv(F.relu(bn(t, pre + "bn1")), pre + "conv1")
                h = h + t
    h = F.relu(bn(h, "bn"))
    h = F.conv2d(h, p["conv_last"])
    h = bn(h, "bn_last")
    return F.avg_pool2d(h, kernel_size=h.shape[-2:]).view(h.size(0), -1).numpy()
