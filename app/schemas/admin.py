"""Bodies of the admin routes (users, audit) and of GET /auth/me/activity."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from app.db.audit_actions import ACTIONS
from app.kit.pagination import CURSOR_PATTERN, MAX_CURSOR, Page
from app.schemas.auth import Role, User
from app.schemas.history import MAX_PAGE_SIZE, DateOrDateTime, TimeZoneName

AuditAction = Literal[ACTIONS]  # type: ignore[valid-type]

MAX_AUDIT_LIMIT = 500
DEFAULT_AUDIT_LIMIT = 100


# --------------------------------------------------------------------------- users


class AdminUser(User):
    """A user account as administrators see it."""

    # Its own example: the one inherited from User lacks the two fields below, which
    # made the schema's example invalid (Redocly's no-invalid-schema-examples).
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "email": "ana.quispe@example.com",
                    "name": "Dra. Ana Quispe",
                    "locale": "es",
                    "role": "doctor",
                    "is_verified": True,
                    "created_at": "2026-01-15T14:03:22+00:00",
                    "is_active": True,
                    "last_login_at": "2026-03-02T09:41:07+00:00",
                }
            ]
        },
    )

    is_active: bool = Field(description="False once an administrator disabled the account.")
    last_login_at: datetime | None = Field(
        description="Last successful login or verification (UTC), null if never."
    )

    @field_serializer("last_login_at")
    def _login_iso(self, value: datetime | None) -> str | None:
        return value.replace(microsecond=0).isoformat() if value is not None else None


class AdminUserPage(Page[AdminUser]):
    """Page[AdminUser], by id."""


class UserQuery(BaseModel):
    """Query parameters of GET /admin/users."""

    q: str | None = Field(
        None, max_length=254, description="Case-insensitive substring of the email or the name"
    )
    page: int = Field(1, ge=1, le=1_000_000)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE, description="Items per page (1-100)")


class RoleRequest(BaseModel):
    """The role to give the account."""

    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="doctor or admin")


# --------------------------------------------------------------------------- audit


class AuditEvent(BaseModel):
    """Who did or saw what, when, from where. Never holds a password, code or token."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(description="ISO 8601 with offset (UTC), microseconds.")
    actor_id: int | None = Field(description="The user who acted; null: the system or unknown")
    actor_email: str | None = Field(
        description="The actor's email then; for auth.login_failed, the attempted email"
    )
    action: AuditAction
    target_type: str | None = Field(description="user, prediction, model, ...")
    target_id: str | None
    ip: str | None = Field(description="Client IP as the service saw it (TRUSTED_PROXIES)")
    request_id: str | None = Field(description="X-Request-ID of the request")
    old: dict[str, Any] | None = Field(description="What changed, before")
    new: dict[str, Any] | None = Field(description="What changed, after (or details)")

    @field_serializer("at")
    def _at_iso(self, value: datetime) -> str:
        return value.isoformat()


class AuditPage(BaseModel):
    """Newest first. Pass next_cursor as `cursor` for the next page; null on the last."""

    items: list[AuditEvent]
    next_cursor: str | None


class ActivityQuery(BaseModel):
    """Keyset paging of an event list."""

    cursor: str | None = Field(
        None, pattern=CURSOR_PATTERN, description="next_cursor of the previous page"
    )
    limit: int = Field(DEFAULT_AUDIT_LIMIT, ge=1, le=MAX_AUDIT_LIMIT)

    @field_validator("cursor")
    @classmethod
    def _row_id(cls, value: str | None) -> str | None:
        if value is not None and int(value) > MAX_CURSOR:
            raise ValueError("cursor is not one this service issued")
        return value


class AuditFilterQuery(BaseModel):
    """Filters of the audit list and export; given ones compose (AND)."""

    actor_id: int | None = Field(None, ge=1, le=2**63 - 1)
    action: AuditAction | None = None
    target_type: str | None = Field(None, max_length=20)
    target_id: str | None = Field(None, max_length=64)
    date_from: DateOrDateTime | None = Field(
        None, description="Inclusive; a plain date starts at midnight in `tz`"
    )
    date_to: DateOrDateTime | None = Field(
        None, description="Inclusive; a plain date includes that whole day in `tz`"
    )
    tz: TimeZoneName | None = Field(
        None, description="IANA zone for plain dates (default DEFAULT_TIMEZONE)"
    )


class AuditQuery(AuditFilterQuery, ActivityQuery):
    """Filters plus the cursor and page size of GET /admin/audit."""
