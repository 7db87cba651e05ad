"""A deterministic hash split: the stand-in for liftstack's assignment engine. Pure.

A recipient's variant depends only on (campaign key, recipient identity, weights), so
re-running an assignment gives the same answer and a recipient never flips variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def bucket(campaign_key: str, recipient: str) -> float:
    """A uniform number in [0, 1) from the campaign and recipient."""
    digest = hashlib.sha256(f"{campaign_key}\x1f{recipient}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_variant(
    campaign_key: str, recipient: str, variants: Sequence[str], weights: Sequence[float] | None = None
) -> str:
    if not variants:
        raise ValueError("at least one variant is required")
    weights = list(weights) if weights is not None else [1.0] * len(variants)
    if len(weights) != len(variants) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("weights must be non-negative, one per variant, and not all zero")
    point = bucket(campaign_key, recipient) * sum(weights)
    cumulative = 0.0
    for variant, weight in zip(variants, weights):
        cumulative += weight
        if point < cumulative:
            return variant
    return variants[-1]  # float rounding at the very top of the range
