"""Development mailer: writes each message, code included, to the log."""

from __future__ import annotations

import logging

from app.config import ConfigError, Settings
from app.mail.base import MailMessage

log = logging.getLogger(__name__)


class ConsoleMailer:
    backend_name = "console"

    def __init__(self, settings: Settings) -> None:
        # The log would then hold live one-time codes (Settings.check_production agrees).
        if settings.is_production:
            raise ConfigError("the console mailer is for development only; use MAIL_BACKEND=smtp")

    async def send(self, message: MailMessage) -> None:
        log.info(
            "console mail (development only) to %s\nSubject: %s\n\n%s",
            message.to,
            message.subject,
            message.text,
        )

    async def aclose(self) -> None:
        return None
