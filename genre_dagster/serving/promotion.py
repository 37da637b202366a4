"""The promotion rule: a new scorer replaces the serving one only if it is not worse."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Largest validation-AUC drop a new scorer may show and still replace the serving one.
PROMOTION_TOLERANCE = 0.005


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of comparing a challenger with the serving scorer on validation AUC."""

    promote: bool
    serving_id: str
    reason: str
    broken: bool = False  # the challenger is unusable (no AUC, or no better than random)


def decide_promotion(
    challenger_id: str,
    challenger_auc: float,
    serving_id: str | None,
    serving_auc: float | None,
    tolerance: float = PROMOTION_TOLERANCE,
) -> PromotionDecision:
    """Promote when there is no serving scorer or the challenger's validation AUC is at least
    `serving_auc - tolerance`. A challenger without a finite AUC or at/below 0.5 is broken."""
    if challenger_auc is None or not math.isfinite(challenger_auc) or challenger_auc <= 0.5:
        keep = serving_id or ""
        return PromotionDecision(
            False, keep, f"{challenger_id} has validation AUC {challenger_auc}: not usable", True
        )
    if serving_id is None or serving_auc is None:
        return PromotionDecision(True, challenger_id, "no scorer was serving yet")
    if serving_id == challenger_id:
        return PromotionDecision(True, challenger_id, f"{challenger_id} is already serving")
    floor = serving_auc - tolerance
    if challenger_auc >= floor:
        return PromotionDecision(
            True,
            challenger_id,
            f"{challenger_id} validation AUC {challenger_auc:.4f} >= {serving_auc:.4f} - "
            f"{tolerance} (serving {serving_id})",
        )
    return PromotionDecision(
        False,
        serving_id,
        f"{challenger_id} validation AUC {challenger_auc:.4f} is worse than serving {serving_id} "
        f"({serving_auc:.4f}) by more than the tolerance {tolerance}; {serving_id} keeps serving",
    )
