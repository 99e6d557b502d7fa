"""binexport.arch: the one WRN block walk (Arch.blocks) in every variant, odd depths and widths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binexport.arch import GROUPS, VARIANTS, Arch, Block


def _oracle(depth: int, widths: tuple[int, int, int]) -> list[tuple[str, int, int, int]]:
    """The SPEC's walk written out by hand: (prefix, stride, in, out), group-major."""
    n = (depth - 2) // 6
    out = []
    cin = widths[0]  # conv0 gives group0's width
    for g in range(3):
        for b in range(n):
            stride = 2 if g and not b else 1
            out.append((f"group{g}.block{b}.", stride, cin, widths[g]))
            cin = widths[g]
    return out


@pytest.mark.parametrize("family", list(VARIANTS))
@pytest.mark.parametrize(("depth", "widths"), [(8, (16, 32, 64)), (14, (11, 22, 44)), (20, (3, 5, 7)), (26, (1, 1, 1))])
def test_blocks_walk_every_variant_and_odd_geometry(family: str, depth: int, widths: tuple[int, int, int]) -> None:
    arch = Arch.of(depth, widths, 7, family)
    blocks = arch.blocks()
    assert [(b.prefix, b.stride, b.in_width, b.out_width) for b in blocks] == _oracle(depth, widths)
    assert len(blocks) == GROUPS * arch.blocks_per_group
    assert [(b.group, b.index) for b in blocks] == [(g, i) for g in range(3) for i in range(arch.blocks_per_group)]
    assert [b.shortcut for b in blocks] == [b.stride == 2 for b in blocks]
    assert sum(b.shortcut for b in blocks) == 2  # groups 1 and 2 halve the map once each


@given(
    n=st.integers(1, 6),
    widths=st.tuples(st.integers(1, 70), st.integers(1, 70), st.integers(1, 70)),
    family=st.sampled_from(list(VARIANTS)),
)
@settings(max_examples=60, deadline=None)
def test_specs_follow_the_walk(n: int, widths: tuple[int, int, int], family: str) -> None:
    """Every block tensor of specs() is named and shaped by the walk: conv0 (out, in), conv1 (out, out), bn0 in."""
    arch = Arch.of(6 * n + 2, widths, 3, family)
    specs = {s.name: s.shape for s in arch.specs()}
    for b in arch.blocks():
        assert specs[b.prefix + "conv0"] == (b.out_width, b.in_width, 3, 3)
        assert specs[b.prefix + "conv1"] == (b.out_width, b.out_width, 3, 3)
        assert specs[b.prefix + "bn0.running_mean"] == (b.in_width,)
        assert specs[b.prefix + "bn1.running_var"] == (b.out_width,)
    block_names = {k for k in specs if k.startswith("group")}
    assert len(block_names) == len(arch.blocks()) * len([k for k in specs if k.startswith("group0.block0.")])


def test_block_is_a_plain_record() -> None:
    b = Block(1, 0, "group1.block0.", 2, 16, 32)
    assert b.shortcut and not Block(0, 0, "group0.block0.", 1, 16, 16).shortcut


def test_infer_takes_the_walks_widths() -> None:
    arch = Arch.of(14, (11, 22, 44), 7)
    got = Arch.infer({s.name: s.shape for s in arch.specs()})
    assert got == arch and got.blocks() == arch.blocks()
