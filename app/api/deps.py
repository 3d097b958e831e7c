"""Annotated dependencies the routers use; resources come from the lifespan (app.state).

Every dependency is `async def`, even the ones that only look something up: FastAPI runs a
plain `def` dependency in the thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.error_i18n import remember_locale
from app.config import Settings
from app.db.models import User
from app.db.session import SessionFactory
from app.errors import Forbidden, NotAuthenticated
from app.inference import Classifier, ModelManifest
from app.mail import Mailer
from app.observability import set_user_id
from app.registry.holder import ModelHolder
from app.repositories import UserRepository
from app.security import (
    InvalidAccessToken,
    Passwords,
    decode_access_token,
    resolve_client_ip,
    trusted_networks,
)
from app.services.audit import ViewLog
from app.services.auth import AuthService
from app.services.notify import CodeMailer
from app.services.stats import TotalsCache
from app.shutdown import DrainGate
from app.storage import ImageStore


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: SessionFactory = request.app.state.sessionmaker
    async with factory() as session:
        yield session


async def get_model_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.models
    return holder


async def get_classifier(request: Request) -> AsyncIterator[Classifier]:
    """The process's current classifier, leased for the request: a hot swap meanwhile
    closes it only after the request is done (app.registry.holder)."""
    holder: ModelHolder = request.app.state.models
    with holder.lease() as classifier:
        yield classifier


async def get_storage(request: Request) -> ImageStore:
    storage: ImageStore = request.app.state.storage
    return storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[ImageStore, Depends(get_storage)]
ClassifierDep = Annotated[Classifier, Depends(get_classifier)]
ModelHolderDep = Annotated[ModelHolder, Depends(get_model_holder)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


# --------------------------------------------------------------------------- auth

log = logging.getLogger(__name__)

# Swagger UI's Authorize button posts the OAuth2 password form here. The scheme is built at
# import time, so it names the default API_PREFIX.
TOKEN_URL = str(Settings.model_fields["api_prefix"].default) + "/auth/login"
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,  # we answer 401 NOT_AUTHENTICATED ourselves, in our error shape
    description="Email as username. The access token lasts ACCESS_TOKEN_MINUTES.",
)


async def get_mailer(request: Request) -> Mailer:
    mailer: Mailer = request.app.state.mailer
    return mailer


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


async def get_client_ip(request: Request, settings: SettingsDep) -> str:
    """The socket peer; X-Forwarded-For only counts when the peer is in TRUSTED_PROXIES.
    A Unix-socket peer (nginx on this host, serve-nginx) has no address: it is local."""
    return resolve_client_ip(
        request.client.host if request.client else UNIX_SOCKET_PEER,
        request.headers.getlist("x-forwarded-for"),
        trusted_networks(tuple(settings.trusted_proxies)),
    )


UNIX_SOCKET_PEER = "127.0.0.1"

MailerDep = Annotated[Mailer, Depends(get_mailer)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
ClientIp = Annotated[str, Depends(get_client_ip)]


@dataclass(frozen=True, slots=True)
class AuthContext:
    user: User
    session_id: str  # refresh-token family of the access token ("sid" claim)


async def get_auth_context(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> AuthContext:
    if not token:
        raise NotAuthenticated()
    try:
        claims = decode_access_token(settings, token)
    except InvalidAccessToken as exc:
        log.debug("access token rejected: %s", exc)
        raise NotAuthenticated() from None
    user = await UserRepository(session).get_with_live_session(claims.user_id, claims.session_id)
    if user is None:  # user deleted, or the session was logged out / revoked
        raise NotAuthenticated()
    set_user_id(user.id)  # for the log lines of this request
    remember_locale(request, user.locale)  # the language of this request's error details
    return AuthContext(user=user, session_id=claims.session_id)


AuthContextDep = Annotated[AuthContext, Depends(get_auth_context)]


async def get_current_user(context: AuthContextDep) -> User:
    return context.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> User:
    if user.role != "admin":
        raise Forbidden("Administrators only")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


async def get_drain_gate(request: Request) -> DrainGate:
    gate: DrainGate = request.app.state.drain
    return gate


DrainGateDep = Annotated[DrainGate, Depends(get_drain_gate)]


async def upload_slot(gate: DrainGateDep) -> AsyncIterator[None]:
    """503 SHUTTING_DOWN once the process drains; counts the upload while it runs."""
    with gate.admit():
        yield


async def get_auth_service(
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    mailer: MailerDep,
    tasks: BackgroundTasks,
    client_ip: ClientIp,
) -> AuthService:
    return AuthService(session, settings, passwords, CodeMailer(mailer, tasks, settings), client_ip)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


# --------------------------------------------------------------------------- history, home


async def get_manifest(classifier: ClassifierDep) -> ModelManifest:
    """The running model's classes and labels."""
    return classifier.manifest


async def get_now() -> datetime:
    """The current instant; tests override this dependency to fix the clock."""
    return datetime.now(UTC)


async def get_optional_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User | None:
    """The bearer token's user, or None when there is no valid token."""
    if not token:
        return None
    try:
        context = await get_auth_context(request, session, settings, token)
    except NotAuthenticated:
        return None
    return context.user


async def get_sessionmaker(request: Request) -> SessionFactory:
    """The app's session factory, for queries that run concurrently on own connections."""
    factory: SessionFactory = request.app.state.sessionmaker
    return factory


async def get_totals_cache(request: Request) -> TotalsCache:
    """The process's cache of everyone's all-time totals (made in the lifespan)."""
    cache: TotalsCache = request.app.state.totals_cache
    return cache


async def get_view_log(request: Request) -> ViewLog:
    """The process's batched writer of view events (made in the lifespan)."""
    views: ViewLog = request.app.state.view_log
    return views


async def get_base_url(request: Request) -> str:
    """The externally visible origin, for absolute image URLs."""
    return str(request.base_url).rstrip("/")


ManifestDep = Annotated[ModelManifest, Depends(get_manifest)]
NowDep = Annotated[datetime, Depends(get_now)]
OptionalUser = Annotated[User | None, Depends(get_optional_user)]
SessionFactoryDep = Annotated[SessionFactory, Depends(get_sessionmaker)]
TotalsCacheDep = Annotated[TotalsCache, Depends(get_totals_cache)]
BaseUrl = Annotated[str, Depends(get_base_url)]
ViewLogDep = Annotated[ViewLog, Depends(get_view_log)]
