"""The agreement gate: an export lands only when every artifact agrees with the float model on
at least ``--min-agreement`` percent of the held-out images it was verified on.

An agreement measured on n images is an estimate: :func:`wilson_interval` gives its 95%
interval, the gate records it for every check, and says when the sample is too small to tell
whether the true agreement is above or below the threshold. :func:`resolving_images` is how
many images separate a threshold from half a point above it (99% from 99.5%: 1,522),
which ``--int8-recipe auto`` verifies on where the held-out set has them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from basisnet_deploy.common.errors import UserError

Z_95 = 1.959964  # two-sided 95% normal quantile
MARGIN_POINTS = 0.5  # auto separates the threshold from this many points above it


class LowAgreement(UserError):
    """An export refused by the agreement gate (the CLI exits 1: the input was fine)."""

    exit_code = 1


def wilson_interval(fraction: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``fraction`` observed on ``n`` trials (it
    stays inside [0, 1] and behaves near 100%, where the normal approximation does not)."""
    if n <= 0:
        return 0.0, 1.0
    z2 = z * z
    centre = (fraction + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(fraction * (1 - fraction) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def resolving_images(min_agreement: float, margin: float = MARGIN_POINTS) -> int:
    """The fewest images on which an observed agreement ``margin`` points above
    ``min_agreement`` has its 95% interval's lower end at or above ``min_agreement``."""
    high = min(min_agreement + margin, 100.0)
    if high <= min_agreement or min_agreement <= 0:
        return 1
    n = 1
    while wilson_interval(high / 100, n)[0] * 100 < min_agreement:
        n *= 2
    lo, hi = n // 2, n
    while lo + 1 < hi:  # the lower end rises with n: bisect for the first n that resolves
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if wilson_interval(high / 100, mid)[0] * 100 < min_agreement else (lo, mid)
    return hi


def lowest_agreements(verification: dict) -> dict[str, float]:
    """Top-1 agreement with float per artifact check, in percent (isolated and end to end)."""
    out = {}
    for role, result in verification.items():
        if not isinstance(result, dict):
            continue
        if "top1_agreement" in result:
            out[role] = 100.0 * result["top1_agreement"]
        for check in ("isolated", "end_to_end"):
            if check in result:
                out[f"{role} ({check.replace('_', ' ')})"] = 100.0 * result[check]["top1_agreement"]
    return out


@dataclass(frozen=True)
class GateResult:
    """What the gate saw: each check's agreement with its 95% interval on ``images``."""

    min_agreement: float
    images: int
    agreements: dict[str, float]  # check -> percent

    @property
    def below(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.agreements.items() if v < self.min_agreement}

    def interval(self, check: str) -> tuple[float, float]:
        low, high = wilson_interval(self.agreements[check] / 100, self.images)
        return round(100 * low, 2), round(100 * high, 2)

    def unresolved(self) -> list[str]:
        """Checks whose 95% interval contains the threshold: this sample cannot say on which
        side of it their true agreement lies."""
        return [k for k, (low, high) in ((k, self.interval(k)) for k in self.agreements)
                if low < self.min_agreement <= high]

    def warning(self) -> str | None:
        unresolved = self.unresolved()
        if not unresolved:
            return None
        need, first = resolving_images(self.min_agreement), unresolved[0]
        low, high = self.interval(first)
        return (f"{len(unresolved)} check(s) have 95% intervals that contain --min-agreement "
                f"{self.min_agreement:g}% on {self.images} images (e.g. {first} "
                f"{self.agreements[first]:.2f}%, {low:.2f}-{high:.2f}%); about {need:,} held-out images separate "
                f"{self.min_agreement:g}% from {min(self.min_agreement + MARGIN_POINTS, 100):g}%")

    def refusal(self) -> str:
        below = self.below
        worst = min(below, key=below.get)
        return (f"{worst} agrees with the float model on {below[worst]:.2f}% of {self.images} "
                f"held-out images, below --min-agreement {self.min_agreement:g}% "
                f"({len(below)} check(s) low)")

    def to_json(self, forced: bool) -> dict:
        return {"min_agreement": self.min_agreement, "forced": forced, "below": self.below,
                "images": self.images,
                "interval_95": {k: list(self.interval(k)) for k in self.agreements},
                "unresolved": self.unresolved()}


def judge(verification: dict, min_agreement: float) -> GateResult:
    return GateResult(min_agreement, int(verification["images"]), lowest_agreements(verification))
