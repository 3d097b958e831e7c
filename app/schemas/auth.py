"""Request and response bodies of the auth router."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_serializer,
)

from app.kit.text import clean_display_name

Locale = Literal["es", "en"]
Role = Literal["doctor", "admin"]



def _visible_name(value: str) -> str:
    """One line of visible text: no control, bidi or zero-width characters (a name is
    written into emails and logs)."""
    cleaned = clean_display_name(value)
    if not cleaned:
        raise ValueError("the name has no visible characters")
    return cleaned


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_visible_name),
    Field(description="Display name, 1-100 characters.", examples=["Dra. Ana Quispe"]),
]
NewPassword = Annotated[
    str,
    Field(
        min_length=10,
        max_length=128,
        description="10-128 characters.",
        examples=["correct-horse-battery"],
    ),
]
Code = Annotated[
    str,
    Field(
        min_length=1,
        max_length=16,
        description="The 6-digit code from the email (spaces and dashes are ignored).",
        examples=["042917"],
    ),
]
EmailField = Annotated[
    EmailStr,
    Field(description="Compared case-insensitively.", examples=["ana.quispe@example.com"]),
]


class RegisterRequest(BaseModel):
    """A new account; it can log in once the emailed code is verified."""

    email: EmailField
    password: NewPassword
    name: Name
    locale: Locale | None = Field(
        None, description="Language of emails and labels; es when omitted.", examples=["es"]
    )


class VerifyRequest(BaseModel):
    """The code emailed at registration (or by /auth/verify/resend)."""

    email: EmailField
    code: Code


class EmailRequest(BaseModel):
    """An email address to send a code to."""

    email: EmailField


class ResetPasswordRequest(BaseModel):
    """The code emailed by /auth/password/forgot and the new password."""

    email: EmailField
    code: Code
    new_password: NewPassword


class RefreshRequest(BaseModel):
    """A refresh token to trade (refresh) or to end (logout)."""

    refresh_token: str = Field(
        min_length=1,
        max_length=2048,
        description="The refresh token from the last TokenPair.",
        examples=["fJ3kq0y9K3h0Zc2m4hY1m9V6yQy8d7f5o1a2b3c4d5e"],
    )


class UpdateMeRequest(BaseModel):
    """The profile fields to change; omitted fields stay as they are."""

    name: Name | None = None
    locale: Locale | None = Field(None, examples=["en"])


class ChangePasswordRequest(BaseModel):
    """The current password, to prove it is the account holder, and the new one."""

    current_password: str = Field(min_length=1, max_length=1024, examples=["old-password-1"])
    new_password: NewPassword


class User(BaseModel):
    """A user account as the API shows it."""

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
                }
            ]
        },
    )

    id: int
    email: str = Field(description="Lower-cased.")
    name: str
    locale: Locale
    role: Role
    is_verified: bool
    created_at: datetime = Field(description="ISO 8601 with offset (UTC).")

    @field_serializer("created_at")
    def _iso_with_offset(self, value: datetime) -> str:
        return value.replace(microsecond=0).isoformat()  # MySQL DATETIME keeps seconds


class TokenPair(BaseModel):
    """Send `access_token` as `Authorization: Bearer ...`; trade `refresh_token` for a new pair
    at /auth/refresh before or after the access token expires (each refresh token works once)."""

    access_token: str = Field(description="JWT (HS256), valid `expires_in` seconds.")
    refresh_token: str | None = Field(
        description="Opaque; single use; valid 30 days by default. null in the cookie session "
        "mode (`session=cookie`): the token is then in the HttpOnly cookie only."
    )
    token_type: Literal["bearer"] = Field(description="Always bearer (OAuth2).")
    expires_in: int = Field(description="Seconds until the access token expires.", examples=[900])


class Accepted(BaseModel):
    """The request was taken; the reply does not say whether the email has an account."""

    message: str = Field(
        examples=["If the address has an account, a code is on its way."],
    )
