"""Code emails from the templates in ./templates, in the user's locale (es default, en)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.mail.base import MailMessage

CodePurpose = Literal["verify", "reset"]
LOCALES = ("es", "en")
DEFAULT_LOCALE = "es"
TEMPLATES = Path(__file__).resolve().parent / "templates"

SUBJECTS: dict[tuple[str, str], str] = {
    ("verify", "es"): "Tu código de verificación de OcuPredict",
    ("verify", "en"): "Your OcuPredict verification code",
    ("reset", "es"): "Tu código para restablecer la contraseña de OcuPredict",
    ("reset", "en"): "Your OcuPredict password reset code",
}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render_code_mail(
    *, to: str, name: str, locale: str, purpose: CodePurpose, code: str, ttl_minutes: int
) -> MailMessage:
    locale = locale if locale in LOCALES else DEFAULT_LOCALE
    env = _environment()
    context = {"name": name, "code": code, "ttl_minutes": ttl_minutes, "lang": locale}
    return MailMessage(
        to=to,
        subject=SUBJECTS[(purpose, locale)],
        text=env.get_template(f"{purpose}.{locale}.txt").render(context),
        html=env.get_template(f"{purpose}.{locale}.html").render(context),
    )
