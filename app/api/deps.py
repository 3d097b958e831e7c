"""Annotated dependencies the routers use: resources, the caller, and one `...Dep` per service.

Resources come from the typed app state (app.api.state.AppState) the lifespan fills.
Every dependency is `async def`, even the ones that only look something up: FastAPI runs a
plain `def` dependency in the thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import BackgroundTasks, Depends, Path, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.error_i18n import remember_locale
from app.api.state import AppState
from app.config import Settings
from app.db.models import Prediction as PredictionRow
from app.db.models import User
from app.db.session import SessionFactory
from app.errors import Forbidden, NotAuthenticated, NotFound
from app.inference import Classifier, ModelManifest
from app.kit.client_ip import LOCAL_PEER
from app.mail import Mailer
from app.observability import set_user_id
from app.registry.holder import ModelHolder
from app.registry.service import RegistryService
from app.repositories import UserRepository
from app.repositories.predictions import PredictionRepository
from app.security import InvalidAccessToken, Passwords, decode_access_token
from app.services.admin_users import AdminUsers
from app.services.audit_trail import AuditTrail
from app.services.audit_views import ViewLog
from app.services.auth import AuthService
from app.services.history import HistoryService
from app.services.idempotency import IdempotentUploads
from app.services.images import PredictionImages
from app.services.notify import CodeMailer
from app.services.prediction import PredictionService, ServingModel
from app.services.stats import StatsService, TotalsCache
from app.shutdown import DrainGate
from app.storage import ImageStore

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- resources


async def get_state(request: Request) -> AppState:
    return cast(AppState, request.app.state)


StateDep = Annotated[AppState, Depends(get_state)]


def _resource(name: str) -> Any:
    """Depends() on one attribute of the app state (each Annotated alias below types it)."""

    async def resource(state: StateDep) -> Any:
        return getattr(state, name)

    resource.__name__ = f"get_{name}"
    return Depends(resource)


SettingsDep = Annotated[Settings, _resource("settings")]
StorageDep = Annotated[ImageStore, _resource("storage")]
ModelHolderDep = Annotated[ModelHolder, _resource("models")]
MailerDep = Annotated[Mailer, _resource("mailer")]
PasswordsDep = Annotated[Passwords, _resource("passwords")]
DrainGateDep = Annotated[DrainGate, _resource("drain")]
SessionFactoryDep = Annotated[SessionFactory, _resource("sessionmaker")]
TotalsCacheDep = Annotated[TotalsCache, _resource("totals_cache")]
ViewLogDep = Annotated[ViewLog, _resource("view_log")]


async def get_session(sessions: SessionFactoryDep) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_classifier(holder: ModelHolderDep) -> AsyncIterator[Classifier]:
    """The process's current classifier, leased for the request: a hot swap meanwhile
    closes it only after the request is done (app.registry.holder)."""
    with holder.lease() as classifier:
        yield classifier


ClassifierDep = Annotated[Classifier, Depends(get_classifier)]


async def get_serving_model(
    holder: ModelHolderDep, tasks: BackgroundTasks
) -> AsyncIterator[ServingModel]:
    """The classifier that answers an upload, leased, with its shadow hook (the holder
    samples the upload for a shadow version after the response is sent)."""
    with holder.lease() as classifier:
        yield ServingModel(classifier, holder.shadow_hook(tasks, classifier))


ServingModelDep = Annotated[ServingModel, Depends(get_serving_model)]


async def get_manifest(classifier: ClassifierDep) -> ModelManifest:
    """The running model's classes and labels."""
    return classifier.manifest


ManifestDep = Annotated[ModelManifest, Depends(get_manifest)]


async def get_now() -> datetime:
    """The current instant; tests override this dependency to fix the clock."""
    return datetime.now(UTC)


NowDep = Annotated[datetime, Depends(get_now)]


async def get_client_ip(request: Request) -> str:
    """The client address ClientIpMiddleware resolved for this request (app.kit.client_ip):
    the rate limits, /metrics, the logs and the audit trail all read this one value."""
    ip = getattr(request.state, "client_ip", None)
    return str(ip) if ip else LOCAL_PEER


ClientIp = Annotated[str, Depends(get_client_ip)]


async def get_base_url(request: Request) -> str:
    """The externally visible origin, for absolute image URLs."""
    return str(request.base_url).rstrip("/")


BaseUrl = Annotated[str, Depends(get_base_url)]


async def upload_slot(gate: DrainGateDep) -> AsyncIterator[None]:
    """503 SHUTTING_DOWN once the process drains; counts the upload while it runs."""
    with gate.admit():
        yield


# --------------------------------------------------------------------------- the caller

# Swagger UI's Authorize button posts the OAuth2 password form here. The scheme is built at
# import time, so it names the default API_PREFIX.
TOKEN_URL = str(Settings.model_fields["api_prefix"].default) + "/auth/login"
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,  # we answer 401 NOT_AUTHENTICATED ourselves, in our error shape
    description="Email as username. The access token lasts ACCESS_TOKEN_MINUTES.",
)
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


@dataclass(frozen=True, slots=True)
class AuthContext:
    user: User
    session_id: str  # refresh-token family of the access token ("sid" claim)


async def get_auth_context(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: BearerToken,
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


async def get_optional_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: BearerToken,
) -> User | None:
    """The bearer token's user, or None when there is no valid token."""
    if not token:
        return None
    try:
        context = await get_auth_context(request, session, settings, token)
    except NotAuthenticated:
        return None
    return context.user


OptionalUser = Annotated[User | None, Depends(get_optional_user)]

MAX_ID = 2**63 - 1
PredictionId = Annotated[int, Path(ge=1, le=MAX_ID, description="Prediction id")]


async def get_owned_prediction(
    id: PredictionId, user: CurrentUser, session: SessionDep
) -> PredictionRow:
    """The caller's prediction `{id}`; another user's is 404 exactly like a missing one."""
    row = await PredictionRepository(session).get_owned(id, user.id)
    if row is None:
        raise NotFound("Prediction not found")
    return row


OwnedPrediction = Annotated[PredictionRow, Depends(get_owned_prediction)]


# --------------------------------------------------------------------------- services


async def get_auth_service(
    session: SessionDep,
    settings: SettingsDep,
    passwords: PasswordsDep,
    mailer: MailerDep,
    tasks: BackgroundTasks,
    client_ip: ClientIp,
    sessions: SessionFactoryDep,
) -> AuthService:
    mail = CodeMailer(mailer, tasks, settings)
    return AuthService(session, settings, passwords, mail, client_ip, sessions)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_prediction_service(
    session: SessionDep, storage: StorageDep, settings: SettingsDep, sessions: SessionFactoryDep
) -> PredictionService:
    return PredictionService(session, storage, settings, IdempotentUploads(sessions, settings))


PredictionServiceDep = Annotated[PredictionService, Depends(get_prediction_service)]


async def get_history_service(
    session: SessionDep,
    sessions: SessionFactoryDep,
    storage: StorageDep,
    settings: SettingsDep,
    manifest: ManifestDep,
    totals_cache: TotalsCacheDep,
    views: ViewLogDep,
) -> HistoryService:
    return HistoryService(
        session,
        storage,
        settings,
        manifest,
        sessions=sessions,
        on_change=totals_cache.clear,
        views=views,
    )


HistoryServiceDep = Annotated[HistoryService, Depends(get_history_service)]


async def get_prediction_images(
    session: SessionDep, storage: StorageDep, settings: SettingsDep, views: ViewLogDep
) -> PredictionImages:
    return PredictionImages(session, storage, settings, views)


PredictionImagesDep = Annotated[PredictionImages, Depends(get_prediction_images)]


async def get_stats_service(
    session: SessionDep,
    sessions: SessionFactoryDep,
    manifest: ManifestDep,
    totals_cache: TotalsCacheDep,
) -> StatsService:
    return StatsService(session, sessions, manifest, totals_cache)


StatsServiceDep = Annotated[StatsService, Depends(get_stats_service)]


async def get_admin_users(session: SessionDep) -> AdminUsers:
    return AdminUsers(session)


AdminUsersDep = Annotated[AdminUsers, Depends(get_admin_users)]


async def get_registry_service(
    session: SessionDep, settings: SettingsDep, storage: StorageDep, holder: ModelHolderDep
) -> RegistryService:
    return RegistryService(session, settings, storage, holder)


RegistryDep = Annotated[RegistryService, Depends(get_registry_service)]


async def get_audit_trail(
    session: SessionDep, sessions: SessionFactoryDep, settings: SettingsDep
) -> AuditTrail:
    return AuditTrail(session, sessions, settings.default_timezone)


AuditTrailDep = Annotated[AuditTrail, Depends(get_audit_trail)]
