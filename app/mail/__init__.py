"""Outgoing mail: the Mailer protocol, SMTP (fastapi-mail) and console backends, templates."""

from __future__ import annotations

from app.config import Settings
from app.mail.base import MailDeliveryError, Mailer, MailMessage
from app.mail.console import ConsoleMailer
from app.mail.render import CodePurpose, render_code_mail
from app.mail.smtp import SmtpMailer

__all__ = [
    "CodePurpose",
    "ConsoleMailer",
    "MailDeliveryError",
    "MailMessage",
    "Mailer",
    "SmtpMailer",
    "build_mailer",
    "render_code_mail",
]


def build_mailer(settings: Settings) -> Mailer:
    """The configured backend; the caller owns it and must `await mailer.aclose()`."""
    if settings.mail_backend == "smtp":
        return SmtpMailer(settings)
    return ConsoleMailer(settings)
