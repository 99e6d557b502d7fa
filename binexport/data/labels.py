"""Class names of the datasets binexport knows, and the ``--labels`` files users bring for anything else.

The CIFAR names are the official ``meta`` / ``batches.meta`` files' (in label order; a test checks them
against the real files); SVHN's class ``i`` is the digit ``i`` (its ``.mat`` files store digit 0 as label 10,
which the reader maps to 0).
"""

from __future__ import annotations

import stat
from pathlib import Path

from binexport.errors import InputError

CIFAR10_LABELS: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_LABELS: tuple[str, ...] = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)
SVHN_LABELS: tuple[str, ...] = tuple(str(d) for d in range(10))
#: Built-in label sets by name (``--labels CIFAR10``).
BUILTIN_LABELS: dict[str, tuple[str, ...]] = {
    "CIFAR10": CIFAR10_LABELS,
    "CIFAR100": CIFAR100_LABELS,
    "SVHN": SVHN_LABELS,
}
#: A ``--labels`` file: one name per line, at most this many bytes (100 class names take ~1 KB).
MAX_LABELS_FILE = 1 << 20


def default_labels(num_classes: int) -> tuple[tuple[str, ...], str]:
    """The names of a ``num_classes``-class model's classes and where they come from, when the user gave none.

    10 classes are taken as CIFAR-10 and 100 as CIFAR-100 (the datasets binexport's models are trained on); any
    other count gets ``class 0``, ``class 1``, ... (give ``--labels FILE`` for real names).
    """
    if num_classes == 10:
        return CIFAR10_LABELS, "CIFAR10 (10 classes; --labels for another dataset)"
    if num_classes == 100:
        return CIFAR100_LABELS, "CIFAR100 (100 classes; --labels for another dataset)"
    return tuple(f"class {i}" for i in range(num_classes)), "class numbers (give --labels FILE for names)"


def load_labels(spec: str | Path, num_classes: int) -> tuple[tuple[str, ...], str]:
    """Class names from ``spec``: a built-in set (``CIFAR10``, ``CIFAR100``, ``SVHN``) or a text file, one name a
    line (blank lines at the end ignored); there must be exactly ``num_classes`` of them.

    Raises:
        InputError: an unreadable, oversized or non-UTF-8 file, or a count that is not the model's.
    """
    key = str(spec).upper().replace("-", "")
    if key in BUILTIN_LABELS and not Path(spec).exists():
        names, origin = BUILTIN_LABELS[key], key
    else:
        p = Path(spec)
        try:
            st = p.stat()
            if not stat.S_ISREG(st.st_mode):
                raise InputError(f"{p}: not a regular file; --labels takes a text file, one class name a line")
            with open(p, "rb") as f:
                raw = f.read(MAX_LABELS_FILE + 1)
        except OSError as e:
            raise InputError(
                f"{p}: can't be read ({e.strerror or e}); --labels takes {', '.join(BUILTIN_LABELS)} or a text "
                "file, one class name a line"
            ) from None
        if len(raw) > MAX_LABELS_FILE:
            raise InputError(f"{p}: larger than {MAX_LABELS_FILE >> 20} MiB; expected one class name a line")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(f"{p}: not UTF-8 text (byte {e.start}); expected one class name a line") from None
        names, origin = tuple(line.strip() for line in text.rstrip().splitlines()), str(p)
    if len(names) != num_classes:
        raise InputError(
            f"{spec}: {len(names)} class names for a model with {num_classes} classes; give one name per class, "
            "in label order"
        )
    return names, origin
