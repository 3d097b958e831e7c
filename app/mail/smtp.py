"""SMTP mailer on fastapi-mail (aiosmtplib underneath): one connection per message."""

from __future__ import annotations

from fastapi_mail import ConnectionConfig, FastMail, MessageSchema, MessageType
from fastapi_mail.schemas import MultipartSubtypeEnum

from app.config import Settings
from app.mail.base import MailDeliveryError, MailMessage


class SmtpMailer:
    backend_name = "smtp"

    def __init__(self, settings: Settings) -> None:
        if "@" not in settings.mail_from:
            raise ValueError("MAIL_FROM must be an email address")
        # model_construct: fastapi-mail's EmailStr refuses reserved domains such as the
        # development default no-reply@ocupredict.local, which a local relay accepts.
        config = ConnectionConfig.model_construct(
            MAIL_USERNAME=settings.mail_username,
            MAIL_PASSWORD=settings.mail_password,
            MAIL_PORT=settings.mail_port,
            MAIL_SERVER=settings.mail_server,
            MAIL_STARTTLS=settings.mail_starttls,
            MAIL_SSL_TLS=settings.mail_ssl_tls,
            MAIL_DEBUG=0,
            MAIL_FROM=settings.mail_from,
            MAIL_FROM_NAME=settings.mail_from_name,
            TEMPLATE_FOLDER=None,
            SUPPRESS_SEND=0,
            USE_CREDENTIALS=bool(settings.mail_username),
            VALIDATE_CERTS=True,
            TIMEOUT=settings.mail_timeout_seconds,
            LOCAL_HOSTNAME=None,
            CERT_BUNDLE=None,
        )
        self._fastmail = FastMail(config)

    async def send(self, message: MailMessage) -> None:
        schema = MessageSchema(
            recipients=[message.to],  # validated into a NameEmail
            subject=message.subject,
            body=message.text,
            subtype=MessageType.plain,
            alternative_body=message.html,  # last part of multipart/alternative wins
            multipart_subtype=MultipartSubtypeEnum.alternative,
        )
        try:
            await self._fastmail.send_message(schema)
        except Exception as exc:
            raise MailDeliveryError(f"SMTP delivery failed ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        return None
