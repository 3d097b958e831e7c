"""The app's process-wide resources, typed: what the lifespan builds and the dependencies
in app.api.deps hand out. `create_app` installs an `AppState` as `app.state`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import State

if TYPE_CHECKING:
    from app.config import Settings
    from app.db.session import SessionFactory
    from app.mail import Mailer
    from app.registry.holder import ModelHolder
    from app.security import Passwords
    from app.services.audit_views import ViewLog
    from app.services.stats import TotalsCache
    from app.shutdown import DrainGate
    from app.storage import ImageStore


class AppState(State):
    """`app.state` with its attributes declared (Starlette's State is a plain namespace)."""

    settings: Settings
    drain: DrainGate  # app/deploy/worker.py closes it on SIGTERM
    # Built by the lifespan (app.main), closed in reverse order on shutdown:
    sessionmaker: SessionFactory
    view_log: ViewLog
    storage: ImageStore
    mailer: Mailer
    passwords: Passwords
    models: ModelHolder
    totals_cache: TotalsCache
