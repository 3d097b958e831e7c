"""Code emails, sent after the response so a slow or dead SMTP server delays nobody.

A failed delivery never undoes the account or the code: it is logged (with the request
id, never the code) and the user can ask again (/auth/verify/resend, /password/forgot).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.background import BackgroundTasks

from app.config import Settings
from app.db.models import User
from app.mail import CodePurpose, Mailer, MailMessage, render_code_mail

log = logging.getLogger(__name__)


class CodeMailer:
    def __init__(self, mailer: Mailer, tasks: BackgroundTasks, settings: Settings) -> None:
        self._mailer = mailer
        self._tasks = tasks
        self._ttl_minutes = settings.code_ttl_minutes

    def send_code(self, user: User, purpose: CodePurpose, code: str) -> None:
        """Queue the code email; it is sent after the response."""
        self._tasks.add_task(self._deliver, self._message(user, purpose, code), user.id, purpose)

    async def deliver_code(self, user: User, purpose: CodePurpose, code: str) -> None:
        """Send the code email now (from work that already runs after the response)."""
        await self._deliver(self._message(user, purpose, code), user.id, purpose)

    def after_response(self, work: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run `work(*args)` after the response is sent, like the emails."""
        self._tasks.add_task(work, *args)

    def _message(self, user: User, purpose: CodePurpose, code: str) -> MailMessage:
        return render_code_mail(
            to=user.email,
            name=user.name,
            locale=user.locale,
            purpose=purpose,
            code=code,
            ttl_minutes=self._ttl_minutes,
        )

    async def _deliver(self, message: MailMessage, user_id: int, purpose: str) -> None:
        try:
            await self._mailer.send(message)
        except Exception as exc:
            # The server's reply or the connection error, never the message (it holds the code).
            cause = exc.__cause__ or exc
            log.error(
                "could not send the %s code email to user %s via %s (%s: %.300s); the user "
                "can ask for a new code",
                purpose,
                user_id,
                self._mailer.backend_name,
                type(cause).__name__,
                cause,
            )
            return
        log.info("sent the %s code email to user %s", purpose, user_id)
