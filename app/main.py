"""Application factory and lifespan.

The lifespan builds each process-wide resource once (database engine, image store,
mailer, classifier), publishes them on the typed `app.state` (app.api.state) for the
dependencies in `app.api.deps`, and closes them in reverse order on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import cast

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from app.api.body_limit import BodyLimitMiddleware
from app.api.errors import error_responses, install_error_handlers
from app.api.openapi import customise_openapi
from app.api.routes import (
    admin_audit,
    admin_datasets,
    admin_models,
    admin_training,
    admin_users,
    auth,
    health,
    history,
    home,
    metrics,
    predict,
)
from app.api.security_headers import SecurityHeadersMiddleware
from app.api.state import AppState
from app.api.webapp import install_web_app
from app.config import Settings
from app.db.session import make_engine, make_sessionmaker
from app.errors import DatabaseUnavailable, PayloadTooLarge
from app.inference import build_classifier
from app.mail import build_mailer
from app.metrics import publish_info
from app.observability import ClientIpMiddleware, RequestIdMiddleware, configure_logging
from app.registry.process import open_holder
from app.security import Passwords
from app.services.audit_views import ViewLog
from app.services.stats import TotalsCache
from app.shutdown import DrainGate
from app.storage import build_image_store

log = logging.getLogger(__name__)


def operation_id(route: APIRoute) -> str:
    """'{tag}-{function}', so the generated client reads predict.create, history.list."""
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = cast(AppState, app.state)
    settings = state.settings
    async with AsyncExitStack() as stack:
        engine = make_engine(settings)
        stack.push_async_callback(engine.dispose)
        state.sessionmaker = make_sessionmaker(engine)
        state.view_log = view_log = ViewLog(state.sessionmaker)
        view_log.start()
        stack.push_async_callback(view_log.aclose)  # before the engine closes
        storage = await build_image_store(settings)
        stack.push_async_callback(storage.aclose)
        state.storage = storage
        mailer = build_mailer(settings)
        stack.push_async_callback(mailer.aclose)
        state.mailer = mailer
        state.passwords = passwords = Passwords.from_settings(settings)
        await passwords.prepare()
        # Weights fetched, verified and warmed up before the app takes any request.
        classifier = await build_classifier(settings)
        # Registered on first start; then the process follows the registry's active version.
        models = await open_holder(settings, storage, state.sessionmaker, classifier)
        stack.push_async_callback(models.close)
        state.models = models
        state.totals_cache = TotalsCache()
        publish_info(
            app_version=app.version,
            model_version=classifier.version,
            backend=classifier.backend_name,
            demo=classifier.demo,
            process=settings.process_index,
        )
        log.info(
            "ocupredict started (environment=%s, process=%d)",
            settings.environment,
            settings.process_index,
        )
        yield
    log.info("ocupredict stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.check_production()
    configure_logging(settings.log_level, settings.json_logs)

    # Swagger UI and ReDoc served from the package, not a CDN: /docs works on a closed
    # hospital network too.
    app = FastAPIOffline(
        title="OcuPredict API",
        version="1.0.0",
        description=(
            "Back-end for AI-assisted eye diagnosis: upload an eye photograph, get a "
            "ResNet18 classification (glaucoma, diabetic retinopathy, normal, cataract), "
            "keep a history, confirm or correct results, and see metrics. Every error body "
            'is {"detail": ..., "code": "UPPER_SNAKE"}.'
        ),
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # The bearer token is not kept in the browser's storage (shared clinic computers).
        swagger_ui_parameters={"persistAuthorization": False},
    )
    app.state = state = AppState()
    state.settings = settings
    state.drain = DrainGate()  # app/deploy/worker.py closes it on SIGTERM
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After", "ETag"],
        )
    prefix = settings.api_prefix
    app.add_middleware(
        BodyLimitMiddleware,
        uploads_mb={
            f"{prefix}/predict": settings.max_upload_mb,
            f"{prefix}/admin/models": settings.model_max_upload_mb,
        },
        max_kb=settings.max_body_kb,
    )
    app.add_middleware(SecurityHeadersMiddleware, api_prefix=prefix, docs_paths=("/docs", "/redoc"))
    app.add_middleware(ClientIpMiddleware, trusted_proxies=tuple(settings.trusted_proxies))
    app.add_middleware(RequestIdMiddleware, process=settings.process_index)

    # Any request may carry a body: over its cap it is 413 (BodyLimitMiddleware); the
    # upload routes declare their own 413 FILE_TOO_LARGE, which wins over this one. Every
    # operation but the health checks uses the database, so may answer 503
    # DATABASE_UNAVAILABLE (app.api.errors); a route that declares its own 503 lists it
    # there too (a route's entry for a status replaces the router's).
    body_limit = error_responses(PayloadTooLarge)
    app.include_router(health.router, prefix=prefix, responses=body_limit)
    everywhere = error_responses(PayloadTooLarge, DatabaseUnavailable)
    for module in (
        auth,
        predict,
        history,
        home,
        admin_models,
        admin_users,
        admin_audit,
        admin_datasets,
        admin_training,
    ):
        app.include_router(module.router, prefix=prefix, responses=everywhere)
    app.include_router(metrics.router)  # outside API_PREFIX, as Prometheus expects
    customise_openapi(app, token_url=f"{prefix}/auth/login")
    install_web_app(app, settings.web_dist_dir, prefix)  # web/dist at /, when built
    return app
