"""The Mailer protocol and the message it sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class MailMessage:
    to: str
    subject: str
    text: str  # plain-text part
    html: str  # HTML part (preferred by clients that can show it)

    def __repr__(self) -> str:  # bodies hold one-time codes: keep them out of reprs
        return f"MailMessage(to=<redacted>, subject={self.subject!r})"


class MailDeliveryError(Exception):
    """The message could not be handed to the mail server."""


@runtime_checkable
class Mailer(Protocol):
    backend_name: str  # "smtp" | "console"

    async def send(self, message: MailMessage) -> None:
        """Deliver or raise MailDeliveryError."""
        ...

    async def aclose(self) -> None: ...
