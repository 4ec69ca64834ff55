"""Cost model: multiply-adds and parameters, counted from the resolved block tables.

What is counted (docs/design.md "Cost model" says why the totals land where they do):
- MAdds: every conv and dense layer's multiply-adds (SE's two 1x1 convs included), plus
  basis synthesis, ``K * P`` per synthesis for ``P`` non-shared weights. Activations, BN,
  pooling, softmax and residual adds are not counted, as in the MobileNet papers.
- Params: conv and dense weights plus one bias per output channel (inference form, BN folded
  into the conv). A non-shared block holds K copies of its expand, depthwise and project
  kernels; its biases (folded shared BN) and SE are shared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from basisnet_deploy.model.arch import Resolved, resolve
from basisnet_deploy.model.config import ArchConfig


@dataclass(frozen=True)
class Cost:
    madds: int
    params: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.madds + other.madds, self.params + other.params)


ZERO = Cost(0, 0)


def _conv(size: int, cin: int, cout: int, kernel: int = 1, bias: bool = True) -> Cost:
    weights = kernel * kernel * cin * cout
    return Cost(size * size * weights, weights + (cout if bias else 0))


def _depthwise(size: int, channels: int, kernel: int) -> Cost:
    weights = kernel * kernel * channels
    return Cost(size * size * weights, weights + channels)


def block_kernel_weights(b) -> int:
    """Weights of a block's expand, depthwise and project kernels: what a basis holds."""
    return (b.cin * b.exp if b.has_expand else 0) + b.kernel ** 2 * b.exp + b.exp * b.out


def trunk_cost(net: Resolved, nonshared: frozenset[int] = frozenset(), bases: int = 1) -> Cost:
    """Stem, blocks and head convs (no classifier). Blocks in ``nonshared`` hold ``bases``
    copies of their kernels; their compute is that of one synthesized kernel."""
    total = _conv(net.blocks[0].size_in, 3, net.stem_channels, kernel=3)
    for b in net.blocks:
        c = ZERO
        if b.has_expand:
            c += _conv(b.size_in, b.cin, b.exp)
        c += _depthwise(b.size_out, b.exp, b.kernel)
        if b.se:
            c += _conv(1, b.exp, b.se) + _conv(1, b.se, b.exp)
        c += _conv(b.size_out, b.exp, b.out)
        if b.index in nonshared:
            c += Cost(0, (bases - 1) * block_kernel_weights(b))
        total += c
    for h in net.head:
        total += _conv(h.size, h.cin, h.channels)
    return total


def dense(cin: int, cout: int) -> Cost:
    return Cost(cin * cout, cin * cout + cout)


def plain_cost(arch: str, width: float, resolution: int, classes: int) -> dict:
    net = resolve(arch, width, resolution)
    total = trunk_cost(net) + dense(net.features, classes)
    return {"madds": total.madds, "params": total.params,
            "network": {"arch": arch, "width": width, "resolution": resolution, "classes": classes}}


def basisnet_cost(cfg: ArchConfig) -> dict:
    """Per-stage and whole-pipeline cost of a BasisNet (no early exit: both stages run)."""
    light = resolve(cfg.light_arch, cfg.light_width, cfg.light_resolution)
    spec = resolve(cfg.specialist_arch, cfg.width, cfg.resolution)
    nonshared = frozenset(cfg.nonshared_blocks)
    lm = (trunk_cost(light) + dense(light.features, cfg.num_classes)
          + dense(light.features, len(nonshared) * cfg.bases))
    sp = trunk_cost(spec, nonshared, cfg.bases) + dense(spec.features, cfg.num_classes)
    p = sum(block_kernel_weights(b) for b in spec.blocks if b.index in nonshared)
    synth = Cost(cfg.bases * p, 0)
    total = lm + synth + sp
    stages = {"lightweight": asdict(lm), "synthesis": asdict(synth), "specialist": asdict(sp)}
    return {"madds": total.madds, "params": total.params, "stages": stages,
            "nonshared_weights_per_basis": p}
