"""The architecture of a 1-bit Wide ResNet: geometry (from tensor shapes) and variant (which family of network).

Kept apart from :mod:`binexport.model` so the tensor list (:meth:`Arch.specs`), which every reader checks
and every writer iterates, has one home. Numpy-free and torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from binexport.errors import InputError

_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")
#: Residual groups of a ``WRN_McDonnell``: the widths double from one to the next, the first block of every
#: group after the first halves the feature map.
GROUPS = 3

#: The architecture variants binexport knows, by family: every field of :class:`Arch` that is not geometry.
#: ``pytorch`` is the ``binary-wide-resnet`` port (the defaults); the two McDonnell families are the paper
#: author's own MATLAB/MatConvNet (2018) and tf.keras (2020) models, whose conventions are proven in
#: docs/research/mcdonnell-conventions.md. MATLAB stores sigma = sqrt(var + 1e-5): binexport keeps
#: ``running_var = sigma**2`` and eps 0, which is MatConvNet's own arithmetic, rather than subtracting 1e-5.
VARIANTS: dict[str, dict[str, object]] = {
    "pytorch": {
        "input_bn": False,
        "input_relu": False,
        "first_conv_binary": False,
        "head": "float",
        "downsample_padding": "symmetric",
        "pool_count_include_pad": True,
        "bn_eps": 1e-5,
    },
    "mcdonnell-matlab": {
        "input_bn": True,
        "input_relu": True,
        "first_conv_binary": True,
        "head": "binary",
        "downsample_padding": "symmetric",
        "pool_count_include_pad": False,
        "bn_eps": 0.0,
    },
    "mcdonnell-keras": {
        "input_bn": True,
        "input_relu": False,
        "first_conv_binary": True,
        "head": "binary",
        "downsample_padding": "tf-same",
        "pool_count_include_pad": False,
        "bn_eps": 1e-5,
    },
    # pytorchcv's (imgclsmob's) wrn20_10_1bit_* / wrn20_10_32bit_*: the port's blocks, shortcut and outside
    # normalisation, but a 1-bit conv0 and 1-bit conv_last followed by an affine bn_last (formats/pytorchcv.py)
    "pytorchcv": {
        "input_bn": False,
        "input_relu": False,
        "first_conv_binary": True,
        "head": "binary-affine",
        "downsample_padding": "symmetric",
        "pool_count_include_pad": True,
        "bn_eps": 1e-5,
    },
}
#: How ``inspect`` names each family.
FAMILY_LABELS = {
    "pytorch": "binary-wide-resnet PyTorch port",
    "mcdonnell-matlab": "McDonnell MATLAB variant",
    "mcdonnell-keras": "McDonnell Keras variant",
    "pytorchcv": "pytorchcv WRN-1bit variant",
}
#: Families with ``num_batches_tracked`` counters (PyTorch BatchNorms); McDonnell's files have none.
_COUNTER_FAMILIES = ("pytorch", "pytorchcv")
#: The (mean, std) on the 0..1 scale a family normalises its input with outside the network, where it is not
#: the SPEC's CIFAR one (binexport.model.CIFAR_MEAN / CIFAR_STD). pytorchcv evaluates CIFAR-10, CIFAR-100 and
#: SVHN with imgclsmob's ``CIFAR10MetaInfo.mean_rgb`` / ``std_rgb`` (CIFAR100MetaInfo and SVHNMetaInfo inherit
#: them), applied as ``transforms.Normalize`` after ``ToTensor``.
INPUT_NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "pytorchcv": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}


@dataclass(frozen=True)
class TensorSpec:
    """One state_dict entry the architecture requires."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "binary" (sign bits), "conv" (float conv), "bn" (BN statistic), "affine" (BN weight/bias)


@dataclass(frozen=True)
class Block:
    """One residual block of the walk :meth:`Arch.blocks` yields, with everything a builder needs to lay it out.

    ``prefix`` (``group{g}.block{b}.``) starts the names of its tensors (``conv0``, ``conv1``, ``bn0``, ``bn1``)
    and of the activations the reference taps. ``stride`` is conv0's; ``in_width`` the channels coming in (bn0,
    conv0's input), ``out_width`` those going out (conv0, bn1, conv1). ``shortcut`` is True where the residual
    path is downsampled (average pool, stride 2, then zero channels up to ``out_width``).
    """

    group: int
    index: int
    prefix: str
    stride: int
    in_width: int
    out_width: int

    @property
    def shortcut(self) -> bool:
        """True where the residual is ``cat([avg_pool(h), 0])`` rather than ``h`` itself (stride-2 blocks)."""
        return self.stride == 2


@dataclass(frozen=True)
class Arch:
    """A ``WRN_McDonnell`` architecture: geometry (identified from tensor shapes) and its variant.

    The variant fields default to the PyTorch port; :data:`VARIANTS` gives them per ``family``, and an Arch
    whose fields are not exactly its family's is refused, so every writer and runtime meets four known
    networks, not arbitrary mixtures. Fields: ``input_bn`` (an affine BN, ``input_bn.*``, on raw 0..255
    pixels instead of outside normalisation), ``input_relu`` (a ReLU after it), ``first_conv_binary``
    (conv0 is sign bits), ``head`` (``float``: float conv_last + affine bn_last; ``binary``: 1-bit conv_last
    + statistics-only bn_last; ``binary-affine``: 1-bit conv_last + affine bn_last), ``downsample_padding``
    (``symmetric``: pad 1 all round; ``tf-same``: TF's
    'same', 0 before and 1 after, for the stride-2 conv and the shortcut pool), ``pool_count_include_pad``
    (the shortcut average counts padding) and ``bn_eps``.
    """

    depth: int
    widths: tuple[int, int, int]
    num_classes: int
    family: str = "pytorch"
    input_bn: bool = False
    input_relu: bool = False
    first_conv_binary: bool = False
    head: str = "float"
    downsample_padding: str = "symmetric"
    pool_count_include_pad: bool = True
    bn_eps: float = 1e-5

    @classmethod
    def of(cls, depth: int, widths: tuple[int, int, int], num_classes: int, family: str = "pytorch") -> Arch:
        """The Arch of ``family`` (a key of :data:`VARIANTS`) with this geometry."""
        if family not in VARIANTS:
            raise InputError(f"unknown architecture family {family!r}; known: {', '.join(VARIANTS)}")
        return cls(depth, widths, num_classes, family, **VARIANTS[family])  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        """An empty layer has no scale (sqrt(2 / 0)) and no logits: refuse it here, whoever builds the Arch."""
        problems = []
        if self.family not in VARIANTS:
            problems.append(f"family {self.family!r} (known: {', '.join(VARIANTS)})")
        elif self.variant() != VARIANTS[self.family]:
            problems.append(f"variant fields {self.variant()} are not those of family {self.family!r}")
        if self.depth < 8 or (self.depth - 2) % 6:
            problems.append(f"depth {self.depth} (expected 6n+2 with n >= 1)")
        if any(w < 1 for w in self.widths):
            problems.append(f"group widths {tuple(self.widths)} (every group needs at least 1 channel)")
        if self.num_classes < 1:
            problems.append(f"{self.num_classes} classes (expected at least 1)")
        if problems:
            raise InputError("not a usable WRN_McDonnell architecture: " + "; ".join(problems))

    @property
    def blocks_per_group(self) -> int:
        return (self.depth - 2) // 6

    @property
    def width(self) -> float:
        return self.widths[0] / 16

    @property
    def name(self) -> str:
        return f"WRN-{self.depth}-{self.width:g}"

    @property
    def is_port(self) -> bool:
        """True for the ``binary-wide-resnet`` PyTorch port (the only network the published packed layout holds)."""
        return self.family == "pytorch"

    @property
    def label(self) -> str:
        """How ``inspect`` names the family, e.g. ``McDonnell MATLAB variant``."""
        return FAMILY_LABELS[self.family]

    @property
    def normalization(self) -> str:
        """Whose outside normalisation the input takes: ``""`` for the SPEC's CIFAR one, else a key of
        :data:`INPUT_NORMALIZATION` (``pytorchcv``). Meaningless for a model with an input BN (raw pixels)."""
        return self.family if self.family in INPUT_NORMALIZATION else ""

    def blocks(self) -> list[Block]:
        """Every residual block in forward order: the one WRN walk every builder, reader and reference uses.

        The first block of every group after the first has stride 2 and a downsampled shortcut, and takes the
        previous group's width in; every other block keeps its group's width and stride 1.

        Example:
            >>> [(b.prefix, b.stride, b.in_width, b.out_width) for b in Arch(8, (16, 32, 64), 10).blocks()]
            [('group0.block0.', 1, 16, 16), ('group1.block0.', 2, 16, 32), ('group2.block0.', 2, 32, 64)]
        """
        out = []
        for g, width in enumerate(self.widths):
            for b in range(self.blocks_per_group):
                first = g > 0 and b == 0
                cin = self.widths[g - 1] if first else width
                out.append(Block(g, b, f"group{g}.block{b}.", 2 if first else 1, cin, width))
        return out

    def variant(self) -> dict[str, object]:
        """The variant fields (everything but geometry and family), as :data:`VARIANTS` lists them."""
        return {k: getattr(self, k) for k in VARIANTS["pytorch"]}

    def pads(self, kernel: int, stride: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) zero padding of a ``kernel`` x ``kernel`` window at ``stride``.

        ``tf-same`` at stride 2 pads 0 before and 1 after: TF's 'same' on the even feature maps of a 32x32 input.
        """
        if kernel == 1:
            return (0, 0, 0, 0)
        if stride == 2 and self.downsample_padding == "tf-same":
            return (0, 0, 1, 1)
        return (1, 1, 1, 1)

    def specs(self) -> list[TensorSpec]:
        """Every tensor of the model: the training code's state_dict order for the port, the same names elsewhere.

        McDonnell models add ``input_bn.weight/bias/running_mean/running_var`` first, store conv0 and
        conv_last as sign bits, have no ``num_batches_tracked`` counters and no ``bn_last`` affine.
        """
        w0, _, w2 = self.widths
        n = self.num_classes
        counters = self.family in _COUNTER_FAMILIES
        out = []
        if self.input_bn:
            out += [TensorSpec("input_bn.weight", (3,), "affine"), TensorSpec("input_bn.bias", (3,), "affine")]
            out += _bn_specs("input_bn", 3, counters)
        out.append(TensorSpec("conv0", (w0, 3, 3, 3), "binary" if self.first_conv_binary else "conv"))
        out.append(TensorSpec("conv_last", (n, w2, 1, 1), "conv" if self.head == "float" else "binary"))
        for blk in self.blocks():
            p, w, cin = blk.prefix, blk.out_width, blk.in_width
            out.append(TensorSpec(p + "conv0", (w, cin, 3, 3), "binary"))
            out.append(TensorSpec(p + "conv1", (w, w, 3, 3), "binary"))
            out.extend(_bn_specs(p + "bn0", cin, counters))
            out.extend(_bn_specs(p + "bn1", w, counters))
        out.extend(_bn_specs("bn", w2, counters))
        if self.head in ("float", "binary-affine"):
            out += [TensorSpec("bn_last.weight", (n,), "affine"), TensorSpec("bn_last.bias", (n,), "affine")]
        out.extend(_bn_specs("bn_last", n, counters))
        return out

    @cached_property
    def kinds(self) -> dict[str, str]:
        """Tensor name -> kind, for every tensor of the architecture."""
        return {s.name: s.kind for s in self.specs()}

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "depth": self.depth,
            "width": self.width,
            "widths": list(self.widths),
            "num_classes": self.num_classes,
            "family": self.family,
            "variant": self.label,
        }

    @classmethod
    def infer(cls, shapes: dict[str, tuple[int, ...]], family: str = "pytorch") -> Arch:
        """Identify the architecture of ``family`` from shapes, then check every key against it."""
        missing = [k for k in ("conv0", "conv_last") if k not in shapes]
        if missing:
            found = ", ".join(sorted(shapes)[:4]) or "no tensors"
            raise InputError(
                f"not a WRN_McDonnell checkpoint: expected tensors 'conv0' and 'conv_last', found {found}...; "
                "binexport reads the 1-bit Wide ResNets of the binary-wide-resnet training code only"
            )
        c0, cl = shapes["conv0"], shapes["conv_last"]
        if len(c0) != 4 or c0[1:] != (3, 3, 3) or len(cl) != 4 or cl[2:] != (1, 1):
            raise InputError(
                f"not a WRN_McDonnell checkpoint: conv0 has shape {c0} (expected (W, 3, 3, 3)) and "
                f"conv_last {cl} (expected (classes, W, 1, 1))"
            )
        blocks = {k.split(".")[1] for k in shapes if k.startswith("group0.block")}
        n = len(blocks)
        if n == 0:
            raise InputError("not a WRN_McDonnell checkpoint: no group0.block* tensors")
        widths = []
        for g in range(GROUPS):
            s = shapes.get(f"group{g}.block0.conv1")
            if s is None or len(s) != 4:
                raise InputError(f"not a WRN_McDonnell checkpoint: missing group{g}.block0.conv1")
            widths.append(int(s[0]))
        arch = cls.of(6 * n + 2, (widths[0], widths[1], widths[2]), int(cl[0]), family)
        problems = []
        if widths[1] != 2 * widths[0] or widths[2] != 2 * widths[1]:
            problems.append(f"group widths {tuple(widths)} must double from group to group")
        if c0[0] != widths[0]:
            problems.append(f"conv0 has {c0[0]} output channels, group0 has {widths[0]}")
        problems += arch.mismatches(shapes)
        if problems:
            raise InputError(
                f"not a valid {arch.name} checkpoint: "
                + "; ".join(problems[:8])
                + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else "")
            )
        return arch

    def mismatches(self, shapes: dict[str, tuple[int, ...]]) -> list[str]:
        """Every missing, unexpected or mis-shaped tensor, by name."""
        specs = {s.name: s.shape for s in self.specs()}
        problems = [f"missing tensor {k!r}" for k in specs if k not in shapes]
        problems += [f"unexpected tensor {k!r}" for k in shapes if k not in specs]
        problems += [
            f"tensor {k!r} has shape {tuple(shapes[k])}, expected {specs[k]}"
            for k in specs
            if k in shapes and tuple(shapes[k]) != specs[k]
        ]
        return problems


def _bn_specs(prefix: str, channels: int, counters: bool = True) -> list[TensorSpec]:
    stats = _BN_STATS if counters else _BN_STATS[:2]
    return [TensorSpec(f"{prefix}.{s}", () if s == "num_batches_tracked" else (channels,), "bn") for s in stats]
