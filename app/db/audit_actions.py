"""The audit trail's vocabulary: every action an event may record (the `action` column)."""

from __future__ import annotations

ACTIONS: tuple[str, ...] = (
    "auth.login",
    "auth.login_failed",
    "auth.logout",
    "auth.refresh_reuse",
    "auth.password_change",
    "auth.password_reset",
    "auth.verify",
    "prediction.view",
    "prediction.image_view",
    "prediction.heatmap_view",
    "prediction.feedback",
    "prediction.delete",
    "model.register",
    "model.activate",
    "model.retire",
    "user.disable",
    "user.enable",
    "user.role",
    "audit.prune",
    "dataset.create",
    "training.start",
    "training.cancel",
    "training.finish",
    "training.fail",
)

# What GET /auth/me/activity shows a user about their own account (target user = them).
SECURITY_ACTIONS: tuple[str, ...] = tuple(a for a in ACTIONS if a.startswith("auth."))
