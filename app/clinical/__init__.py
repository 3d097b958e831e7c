"""Clinical decision support: the image-quality gate and the referral recommendation.

Pure functions on arrays and probabilities, no I/O: the prediction service calls them.
"""

from app.clinical.quality import GATE_SIZE, Quality, QualityThresholds, Reason, assess
from app.clinical.recommendation import (
    RECOMMENDATIONS,
    Recommendation,
    ReferralPolicy,
    recommend,
)

__all__ = [
    "GATE_SIZE",
    "RECOMMENDATIONS",
    "Quality",
    "QualityThresholds",
    "Reason",
    "Recommendation",
    "ReferralPolicy",
    "assess",
    "recommend",
]
