"""Accounts and sessions: registration with emailed codes, login, refresh, logout,
password recovery, profile. Logic lives in app.services.auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.cookie_session import (
    SessionMode,
    clear_refresh_cookie,
    clearing_headers,
    refresh_cookie,
    set_refresh_cookie,
)
from app.api.deps import (
    AuditTrailDep,
    AuthContextDep,
    AuthServiceDep,
    CurrentUser,
    SettingsDep,
)
from app.api.errors import error_responses
from app.errors import (
    AccountDisabled,
    CsrfRejected,
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


COOKIE_MODE = (
    " With `session=cookie` (the web app) the refresh token is set as the HttpOnly cookie "
    "`ocupredict_refresh` (Secure, SameSite=Strict, Path={API_PREFIX}/auth) and the "
    "TokenPair's `refresh_token` is null."
)
COOKIE_USE = (
    " Without a body the refresh token is taken from the `ocupredict_refresh` cookie; such "
    "a request must carry `X-OcuPredict-Client: web` and come from this origin, else 403 "
    "CSRF_REJECTED."
)
SessionQuery = Annotated[
    SessionMode | None,
    Query(
        alias="session",
        description="cookie: keep the refresh token in an HttpOnly cookie (the web app)",
    ),
]
OptionalRefresh = Annotated[
    RefreshRequest | None,
    Body(description="The refresh token; omit it to use the web app's cookie"),
]


def _pair(tokens: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        token_type="bearer",  # noqa: S106 - the OAuth2 token type, not a secret
        expires_in=tokens.expires_in,
    )


def _answer(
    tokens: IssuedTokens, mode: SessionMode | None, response: Response, settings: SettingsDep
) -> TokenPair:
    """The pair as JSON; in cookie mode the refresh token goes into the cookie instead."""
    pair = _pair(tokens)
    if mode == "cookie":
        set_refresh_cookie(response, tokens.refresh_token, settings)
        pair.refresh_token = None
    return pair


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
    "an administrator disabled the (pending) account." + COOKIE_MODE,
)
async def verify(
    body: VerifyRequest,
    service: AuthServiceDep,
    response: Response,
    settings: SettingsDep,
    session_mode: SessionQuery = None,
) -> TokenPair:
    return _answer(await service.verify(body.email, body.code), session_mode, response, settings)


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
    "EMAIL_NOT_VERIFIED or ACCOUNT_DISABLED only after a correct password." + COOKIE_MODE,
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    service: AuthServiceDep,
    response: Response,
    settings: SettingsDep,
    session_mode: SessionQuery = None,
) -> TokenPair:
    tokens = await service.login(form.username, form.password)
    return _answer(tokens, session_mode, response, settings)


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=error_responses(InvalidRefreshToken, CsrfRejected, ValidationFailed),
    summary="Trade a refresh token for a new pair",
    description="Each refresh token works once. Presenting a spent one again revokes its "
    "whole session (token family): someone else has a copy." + COOKIE_USE + " The rotated "
    "token is set as the new cookie (and `refresh_token` is null); a refused cookie is "
    "cleared.",
)
async def refresh(
    request: Request,
    response: Response,
    service: AuthServiceDep,
    settings: SettingsDep,
    body: OptionalRefresh = None,
) -> TokenPair:
    if body is not None:
        return _pair(await service.refresh(body.refresh_token))
    token = refresh_cookie(request)
    if token is None:
        raise InvalidRefreshToken("No refresh token: send it in the body or as the cookie")
    try:
        tokens = await service.refresh(token)
    except InvalidRefreshToken as exc:
        raise InvalidRefreshToken(exc.detail, clearing_headers(settings)) from None
    return _answer(tokens, "cookie", response, settings)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(CsrfRejected, ValidationFailed),
    summary="End the session of this refresh token",
    description="Without a body the web app's cookie is used (and cleared)." + COOKIE_USE,
)
async def logout(
    request: Request,
    service: AuthServiceDep,
    settings: SettingsDep,
    body: OptionalRefresh = None,
) -> Response:
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    if body is not None:
        await service.logout(body.refresh_token)
        return response
    token = refresh_cookie(request)
    if token is not None:
        await service.logout(token)
    clear_refresh_cookie(response, settings)
    return response


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
