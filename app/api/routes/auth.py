"""Accounts and sessions: registration with emailed codes, login, refresh, logout,
password recovery, profile. Logic lives in app.services.auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import AuditTrailDep, AuthContextDep, AuthServiceDep, CurrentUser
from app.api.errors import error_responses
from app.errors import (
    AccountDisabled,
    EmailNotVerified,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidRefreshToken,
    NotAuthenticated,
    RateLimited,
    ValidationFailed,
    WrongCurrentPassword,
)
from app.schemas.admin import ActivityQuery, AuditPage
from app.schemas.auth import (
    Accepted,
    ChangePasswordRequest,
    EmailRequest,
    RefreshRequest,
    RegisterRequest,
    ResetPasswordRequest,
    TokenPair,
    UpdateMeRequest,
    VerifyRequest,
)
from app.schemas.auth import User as UserOut
from app.services.auth import Registration
from app.services.login_sessions import IssuedTokens

router = APIRouter(prefix="/auth", tags=["auth"])

CODE_SENT = "If the address has an account that needs it, a code is on its way."


def _pair(tokens: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="bearer",  # noqa: S106 - the OAuth2 token type, not a secret
        expires_in=tokens.expires_in,
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(EmailTaken, ValidationFailed, RateLimited),
    summary="Create an account; a 6-digit code is emailed",
    description="Registering again an email that is still unverified replaces the pending "
    "registration (name, password, locale) and sends a new code. A verified account gives "
    "409 EMAIL_TAKEN.",
)
async def register(body: RegisterRequest, service: AuthServiceDep) -> UserOut:
    user = await service.register(
        Registration(email=body.email, password=body.password, name=body.name, locale=body.locale)
    )
    return UserOut.model_validate(user)


@router.post(
    "/verify",
    response_model=TokenPair,
    responses=error_responses(InvalidCode, AccountDisabled, ValidationFailed, RateLimited),
    summary="Verify the email with the code; logs in",
    description="400 INVALID_CODE for a wrong, expired, used or exhausted code and for an "
    "unknown email alike. A code allows CODE_MAX_ATTEMPTS tries. 403 ACCOUNT_DISABLED when "
    "an administrator disabled the (pending) account.",
)
async def verify(body: VerifyRequest, service: AuthServiceDep) -> TokenPair:
    return _pair(await service.verify(body.email, body.code))


@router.post(
    "/verify/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=error_responses(ValidationFailed, RateLimited),
    summary="Send a new verification code",
    description="Same reply whether or not the email has an (unverified) account.",
)
async def resend_verification(body: EmailRequest, service: AuthServiceDep) -> Accepted:
    await service.resend_verification(body.email)
    return Accepted(message=CODE_SENT)


@router.post(
    "/login",
    response_model=TokenPair,
    responses=error_responses(
        InvalidCredentials, EmailNotVerified, AccountDisabled, ValidationFailed, RateLimited
    ),
    summary="Log in with email (as username) and password",
    description="OAuth2 password form, so Swagger UI's Authorize button works. 401 "
    "INVALID_CREDENTIALS for an unknown email and a wrong password alike; 403 "
    "EMAIL_NOT_VERIFIED or ACCOUNT_DISABLED only after a correct password.",
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], service: AuthServiceDep
) -> TokenPair:
    return _pair(await service.login(form.username, form.password))


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=error_responses(InvalidRefreshToken, ValidationFailed),
    summary="Trade a refresh token for a new pair",
    description="Each refresh token works once. Presenting a spent one again revokes its "
    "whole session (token family): someone else has a copy.",
)
async def refresh(body: RefreshRequest, service: AuthServiceDep) -> TokenPair:
    return _pair(await service.refresh(body.refresh_token))


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(ValidationFailed),
    summary="End the session of this refresh token",
)
async def logout(body: RefreshRequest, service: AuthServiceDep) -> None:
    await service.logout(body.refresh_token)


@router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=error_responses(ValidationFailed, RateLimited),
    summary="Email a password reset code",
    description="Same reply whether or not the email has an account.",
)
async def forgot_password(body: EmailRequest, service: AuthServiceDep) -> Accepted:
    await service.forgot_password(body.email)
    return Accepted(message=CODE_SENT)


@router.post(
    "/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(InvalidCode, ValidationFailed, RateLimited),
    summary="Set a new password with the emailed code",
    description="Ends every session of the account.",
)
async def reset_password(body: ResetPasswordRequest, service: AuthServiceDep) -> None:
    await service.reset_password(body.email, body.code, body.new_password)


@router.get(
    "/me",
    response_model=UserOut,
    responses=error_responses(NotAuthenticated),
    summary="The logged-in user",
)
async def read_me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)


@router.patch(
    "/me",
    response_model=UserOut,
    responses=error_responses(NotAuthenticated, ValidationFailed),
    summary="Change name or locale",
)
async def update_me(body: UpdateMeRequest, user: CurrentUser, service: AuthServiceDep) -> UserOut:
    return UserOut.model_validate(await service.update_profile(user, body.name, body.locale))


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(
        WrongCurrentPassword, NotAuthenticated, ValidationFailed, RateLimited
    ),
    summary="Change the password",
    description="400 INVALID_CREDENTIALS when the current password is wrong. Every other "
    "session ends; this one stays.",
)
async def change_password(
    body: ChangePasswordRequest, context: AuthContextDep, service: AuthServiceDep
) -> None:
    await service.change_password(
        context.user, context.session_id, body.current_password, body.new_password
    )


@router.get(
    "/me/activity",
    response_model=AuditPage,
    responses=error_responses(NotAuthenticated, ValidationFailed),
    summary="My account's security events",
    description="Logins (and failed ones naming this account), verifications, logouts, "
    "password changes and resets, refresh-token reuse, newest first; nothing about other "
    "accounts. Keyset pages: pass `next_cursor` as `cursor`.",
)
async def my_activity(
    user: CurrentUser, trail: AuditTrailDep, query: Annotated[ActivityQuery, Query()]
) -> AuditPage:
    return await trail.security_page(user, query.cursor, query.limit)
