"""Checkpoints in the training code's exact layout, made from random weights.

The demo, the tests and the benchmarks need files users would have without
downloading a 205 MB training run; these follow the SPEC's layouts key for key
(``module.`` prefix, SGD momentum state, CosineAnnealingLR state, log.txt).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from binexport.errors import InputError
from binexport.model import Arch

#: Widest synthetic WRN: WRN-20-16 is a 520 MB training checkpoint; wider ones only fill disks.
MAX_WIDTH = 16


def make_arch(depth: int = 20, width: float = 10, num_classes: int = 100) -> Arch:
    """The WRN-depth-width of ``num_classes`` classes; InputError for a width that gives no whole channel count."""
    if (depth - 2) % 6 or depth < 8:
        raise InputError(f"depth must be 6n+2 with n >= 1, got {depth}")
    if not (math.isfinite(width) and 0 < width <= MAX_WIDTH) or (16 * width) != int(16 * width):
        raise InputError(
            f"width {width} is not usable: expected a number in (0, {MAX_WIDTH}] that is a multiple "
            "of 1/16 (16 x width channels in the first group), e.g. 10"
        )
    w = (int(16 * width), int(32 * width), int(64 * width))
    return Arch(depth=depth, widths=w, num_classes=num_classes)


def random_state(arch: Arch, seed: int = 0, zeros: int = 0) -> dict[str, np.ndarray]:
    """Latent float weights and plausible BN statistics, canonical names, in state_dict order.

    ``zeros`` puts that many exact-zero weights into the first block conv.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in arch.specs():
        n = spec.name
        if n.endswith("num_batches_tracked"):
            out[n] = np.array(int(rng.integers(1, 100_000)), dtype=np.int64)
        elif n.endswith("running_var"):
            out[n] = rng.uniform(0.5, 2.0, spec.shape).astype(np.float32)
        elif n.endswith("running_mean") or n == "bn_last.bias":
            out[n] = rng.normal(0, 0.1, spec.shape).astype(np.float32)
        elif n == "bn_last.weight":
            out[n] = rng.uniform(0.5, 2.0, spec.shape).astype(np.float32)
        else:
            fan_in = math.prod(spec.shape[1:])
            out[n] = rng.normal(0, math.sqrt(2.0 / fan_in), spec.shape).astype(np.float32)
    if zeros:
        first = "group0.block0.conv0"
        flat = out[first].reshape(-1)
        flat[rng.choice(flat.size, size=zeros, replace=False)] = 0.0
    return out


def training_checkpoint(state: dict[str, np.ndarray], epoch: int = 160) -> dict[str, object]:
    """The dict ``torch.save`` gets in the training code: model, optimizer, scheduler, epoch."""
    import torch

    sd = {"module." + k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}
    params = [k for k in state if not (".running_" in k or k.endswith("num_batches_tracked"))]
    rng = np.random.default_rng(1)
    momentum = {
        i: {"momentum_buffer": torch.from_numpy(rng.normal(0, 1e-3, state[k].shape).astype(np.float32))}
        for i, k in enumerate(params)
    }
    optimizer = {
        "state": momentum,
        "param_groups": [
            {
                "lr": 0.0,
                "momentum": 0.9,
                "dampening": 0,
                "weight_decay": 0.0005,
                "nesterov": False,
                "maximize": False,
                "foreach": None,
                "differentiable": False,
                "fused": None,
                "params": list(range(len(params))),
            }
        ],
    }
    scheduler = {
        "T_max": 160,
        "eta_min": 0,
        "base_lrs": [0.1],
        "last_epoch": epoch,
        "verbose": False,
        "_step_count": epoch + 1,
        "_get_lr_called_within_step": False,
        "_last_lr": [0.0],
    }
    return {"state_dict": sd, "optimizer": optimizer, "scheduler": scheduler, "epoch": epoch}


def write_training_run(
    folder: str | Path,
    arch: Arch,
    binarize: bool = True,
    seed: int = 0,
    zeros: int = 0,
    legacy: bool = False,
    with_log: bool = True,
) -> Path:
    """A training run's folder: ``checkpoint.pth.tar`` plus ``log.txt``, as ``main.py --save`` leaves it."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "checkpoint.pth.tar"
    torch.save(training_checkpoint(random_state(arch, seed, zeros)), ckpt, _use_new_zipfile_serialization=not legacy)
    if with_log:
        opts = {
            "depth": arch.depth,
            "width": arch.width,
            "dataset": "CIFAR100" if arch.num_classes == 100 else "CIFAR10",
            "binarize": binarize,
            "batch_size": 128,
            "lr": 0.1,
            "epochs": 160,
        }
        lines = [json.dumps({**opts, "epoch": e, "test_acc": 0.0}) for e in (1, 2)]
        (folder / "log.txt").write_text("\n".join(lines) + "\n")
    return ckpt


def write_cifar_testset(
    root: str | Path, images: np.ndarray, labels: np.ndarray, dataset: str = "CIFAR100", split: str = "test"
) -> Path:
    """A test (or ``split="train"``: training) file in torchvision's layout.

    ``cifar-100-python/test`` / ``train``, or ``cifar-10-batches-py/test_batch`` / ``data_batch_1``;
    ``images`` are uint8 NHWC, stored planar (N, 3072) as in the real files.
    """
    import pickle

    root = Path(root)
    train = split == "train"
    folder, member, key = (
        ("cifar-100-python", "train" if train else "test", "fine_labels")
        if dataset == "CIFAR100"
        else ("cifar-10-batches-py", "data_batch_1" if train else "test_batch", "labels")
    )
    data = np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1))
    label = b"training batch 1 of 1" if train else b"testing batch 1 of 1"
    obj = {
        b"batch_label": label,
        key.encode(): [int(v) for v in labels],
        b"data": data,
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(images))],
    }
    path = root / folder / member
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path
