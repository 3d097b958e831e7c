"""The audit trail: who did or saw what, when, from where.

Recording is one call, made by the flow that performs the change, before it commits:

    await audit.record(session, "prediction.feedback", actor=user,
                       target=("prediction", row.id), old=before, new=after)

The event is an INSERT in the caller's transaction: if the change rolls back, so does its
event; when the change commits, its event is committed with it. Views change nothing and
must not slow the read: they go through the process's `ViewLog` (app.state.view_log),
which writes them in batches (app.services.audit_views). The client IP and the
request id come from the request context (ClientIpMiddleware, RequestIdMiddleware), so
callers pass neither. `old` / `new` are small JSON objects of what changed; `record`
refuses keys that name a secret (passwords, codes, tokens), which never belong here.

Events are append-only: nothing updates one, and only `AuditTrail.prune` (the
`ocupredict prune-audit` command; app.services.audit_trail, which also pages and
exports) deletes, itself leaving an `audit.prune` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db.audit_actions import ACTIONS
from app.db.base import utcnow
from app.db.models import User
from app.observability import client_ip_var, request_id_var
from app.repositories.audit import AuditRepository

# Keys that would carry a secret; an event never holds one (not even hashed).
_SECRET_KEYS = frozenset(
    {
        "password",
        "current_password",
        "new_password",
        "password_hash",
        "code",
        "code_hash",
        "token",
        "access_token",
        "refresh_token",
        "token_hash",
        "signature",
        "secret",
    }
)

def _check_values(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if str(key).lower() in _SECRET_KEYS:
                raise ValueError(f"audit {where} must not hold {key!r}")
            _check_values(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_values(item, where)


def event_values(
    action: str,
    *,
    actor: User | int | None = None,
    actor_email: str | None = None,
    target: tuple[str, object] | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The row of one event, with the IP and request id of the current request."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    _check_values(old, "old")
    _check_values(new, "new")
    if isinstance(actor, User):
        actor_id: int | None = actor.id
        actor_email = actor_email or actor.email
    else:
        actor_id = actor
    request_id = request_id_var.get()
    return {
        "at": at or utcnow(),
        "actor_id": actor_id,
        "actor_email": actor_email[:254] if actor_email else None,
        "action": action,
        "target_type": target[0] if target else None,
        "target_id": str(target[1])[:64] if target else None,
        "ip": client_ip_var.get(),
        "request_id": None if request_id == "-" else request_id,
        "old": dict(old) if old is not None else None,
        "new": dict(new) if new is not None else None,
    }


async def record(
    session: AsyncSession,
    action: str,
    *,
    actor: User | int | None = None,
    actor_email: str | None = None,
    target: tuple[str, object] | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Add one event to the session's transaction (the caller commits).

    `actor`: the user who acted (a User, or an id), None for the system or an unknown
    caller (then `actor_email` may say who they claimed to be). `target`: (type, id), e.g.
    ("prediction", 42), ("user", 7), ("model", "0123abcd").
    """
    values = event_values(
        action, actor=actor, actor_email=actor_email, target=target, old=old, new=new, at=at
    )
    await AuditRepository(session).add(values)
