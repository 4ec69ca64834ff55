"""MobileNet architectures as data.

Each backbone is a block table in the form of TF-slim's ``V3_LARGE`` op list: one row per
inverted-bottleneck block, ``kernel, expanded channels, out channels, SE, nonlinearity,
stride`` at width 1.0. This module is the only place the tables live; the Keras builder
(``layers``/``model``) and the cost model (``cost``) both read the resolved form that
:func:`resolve` returns, so they cannot disagree about a channel count.

Width scaling follows the reference MobileNet code (``_make_divisible``): channels are
rounded to a multiple of 8, never below 90% of the scaled value, never below 8. Expanded
channels are scaled as a ratio of the *scaled* input channels, as slim's ``expand_input``
does, and the final 1x1 layer only grows for multipliers above 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ACTIVATIONS = ("RE", "RE6", "HS")  # ReLU, ReLU6, hard-swish


@dataclass(frozen=True)
class Block:
    """One row of a block table, at width 1.0."""

    kernel: int
    exp: int
    out: int
    se: bool
    act: str
    stride: int


@dataclass(frozen=True)
class HeadConv:
    """A 1x1 conv after the last block. ``pooled`` convs run on the 1x1 pooled features."""

    channels: int
    act: str
    bn: bool
    pooled: bool
    grow_only: bool  # True: scaled only when width > 1 (slim's finegrain_classification_mode)


@dataclass(frozen=True)
class Arch:
    name: str
    stem_channels: int
    stem_act: str
    blocks: tuple[Block, ...]
    head: tuple[HeadConv, ...]


def _table(text: str) -> tuple[Block, ...]:
    rows = []
    for line in text.strip().splitlines():
        k, e, o, se, act, s = line.split()
        assert act in ACTIVATIONS, act
        rows.append(Block(int(k), int(e), int(o), se == "SE", act, int(s)))
    return tuple(rows)


def _v2_table(rows: list[tuple[int, int, int, int]], stem: int) -> tuple[Block, ...]:
    """Expand MobileNetV2's (t, c, n, s) rows into one Block per inverted bottleneck."""
    blocks, cin = [], stem
    for t, c, n, s in rows:
        for i in range(n):
            blocks.append(Block(3, cin * t, c, False, "RE6", s if i == 0 else 1))
            cin = c
    return tuple(blocks)


MV3_LARGE = Arch(
    name="mv3-large",
    stem_channels=16,
    stem_act="HS",
    blocks=_table("""
        3  16  16 -  RE 1
        3  64  24 -  RE 2
        3  72  24 -  RE 1
        5  72  40 SE RE 2
        5 120  40 SE RE 1
        5 120  40 SE RE 1
        3 240  80 -  HS 2
        3 200  80 -  HS 1
        3 184  80 -  HS 1
        3 184  80 -  HS 1
        3 480 112 SE HS 1
        3 672 112 SE HS 1
        5 672 160 SE HS 2
        5 960 160 SE HS 1
        5 960 160 SE HS 1
    """),
    head=(HeadConv(960, "HS", True, False, False), HeadConv(1280, "HS", False, True, True)),
)

MV3_SMALL = Arch(
    name="mv3-small",
    stem_channels=16,
    stem_act="HS",
    blocks=_table("""
        3  16 16 SE RE 2
        3  72 24 -  RE 2
        3  88 24 -  RE 1
        5  96 40 SE HS 2
        5 240 40 SE HS 1
        5 240 40 SE HS 1
        5 120 48 SE HS 1
        5 144 48 SE HS 1
        5 288 96 SE HS 2
        5 576 96 SE HS 1
        5 576 96 SE HS 1
    """),
    head=(HeadConv(576, "HS", True, False, False), HeadConv(1024, "HS", False, True, True)),
)

MV2 = Arch(
    name="mv2",
    stem_channels=32,
    stem_act="RE6",
    blocks=_v2_table(
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)],
        stem=32,
    ),
    head=(HeadConv(1280, "RE6", True, False, True),),
)

ARCHS = {a.name: a for a in (MV3_LARGE, MV3_SMALL, MV2)}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor``, never below 90% of it (reference code)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class ResolvedBlock:
    """A block with real channel counts and spatial sizes for one width and resolution."""

    index: int  # 1-based, the paper's L<index>
    cin: int
    exp: int  # expanded channels; == cin when the block has no expand conv
    out: int
    kernel: int
    stride: int
    se: int  # squeeze channels, 0 without SE
    act: str
    size_in: int  # input spatial size (square)

    @property
    def has_expand(self) -> bool:
        return self.exp != self.cin

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.cin == self.out

    @property
    def size_out(self) -> int:
        return math.ceil(self.size_in / self.stride)  # SAME padding


@dataclass(frozen=True)
class ResolvedHead:
    channels: int
    act: str
    bn: bool
    pooled: bool
    cin: int
    size: int  # spatial size it runs at (1 for pooled convs)


@dataclass(frozen=True)
class Resolved:
    arch: Arch
    width: float
    resolution: int
    stem_channels: int
    blocks: tuple[ResolvedBlock, ...]
    head: tuple[ResolvedHead, ...]

    @property
    def features(self) -> int:
        """Channels of the last head conv, the input of the classifier."""
        return self.head[-1].channels


def resolve(arch: Arch | str, width: float = 1.0, resolution: int = 224) -> Resolved:
    """Real channel counts and spatial sizes of ``arch`` at ``width`` and ``resolution``."""
    arch = ARCHS[arch] if isinstance(arch, str) else arch
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    if resolution < 8:
        raise ValueError(f"resolution must be at least 8, got {resolution}")
    stem = make_divisible(arch.stem_channels * width)
    size = math.ceil(resolution / 2)
    blocks, cin, cin_ref = [], stem, arch.stem_channels
    for i, b in enumerate(arch.blocks, start=1):
        # Expansion is a ratio of the input, applied to the scaled input (slim expand_input).
        exp = make_divisible(cin * b.exp / cin_ref) if b.exp != cin_ref else cin
        out = make_divisible(b.out * width)
        se = make_divisible(exp / 4) if b.se else 0
        rb = ResolvedBlock(i, cin, exp, out, b.kernel, b.stride, se, b.act, size)
        blocks.append(rb)
        cin, cin_ref, size = out, b.out, rb.size_out
    head = []
    for h in arch.head:
        if h.grow_only:
            ch = make_divisible(h.channels * width) if width > 1.0 else h.channels
        else:
            ch = make_divisible(h.channels * width)
        head.append(ResolvedHead(ch, h.act, h.bn, h.pooled, cin, 1 if h.pooled else size))
        cin = ch
    return Resolved(arch, width, resolution, stem, tuple(blocks), tuple(head))
