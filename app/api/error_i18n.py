"""The error `detail` in the caller's language; the `code` never changes.

The language: Accept-Language (the first of es, en by the client's preference), else the
authenticated caller's `locale` (set on the request by the auth dependency), else English.
Details are written in English where they are raised; Spanish comes from this table: an
exact translation of the detail when it has one, else the code's own Spanish message
followed by the detail (a detail with variable parts, e.g. which class was refused or
why a model is invalid, keeps them). Validation problem lists (422 VALIDATION_ERROR) stay
as they are.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from fastapi import Request

from app.errors import KnownError

Language = Literal["es", "en"]
SUPPORTED: tuple[Language, ...] = ("es", "en")
DEFAULT: Language = "en"
_SCOPE_KEY = "ocupredict.user_locale"

# The code's message in Spanish: every code the service answers with.
SPANISH_BY_CODE: dict[str, str] = {
    "ACCOUNT_DISABLED": "Un administrador ha desactivado esta cuenta",
    "BAD_REQUEST": "No se pudo interpretar la solicitud",
    "CONFLICT": "La solicitud entra en conflicto con el estado actual",
    "CSRF_REJECTED": "La cookie de sesión solo se acepta desde la propia aplicación web",
    "DATABASE_UNAVAILABLE": "La base de datos no está disponible; inténtelo de nuevo",
    "EMAIL_NOT_VERIFIED": "Primero verifique la dirección de correo",
    "EMAIL_TAKEN": "Ya existe una cuenta con este correo",
    "FILE_TOO_LARGE": "El archivo supera el tamaño máximo permitido",
    "DATASET_OVERLAP": (
        "El conjunto de entrenamiento comparte imágenes o pacientes con el de prueba"
    ),
    "UNKNOWN_RECIPE": "No existe esa receta de entrenamiento",
    "TRAINING_JOB_FINISHED": "El trabajo de entrenamiento ya terminó",
    "GATES_NOT_MET": "La versión no supera sus criterios de evaluación",
    "SHADOW_INSUFFICIENT": "La versión aún no tiene suficientes casos en sombra",
    "IDEMPOTENCY_KEY_IN_USE": (
        "Una solicitud con esta Idempotency-Key todavía se está procesando; reintente en breve"
    ),
    "IDEMPOTENCY_KEY_REUSED": (
        "Esta Idempotency-Key se usó con otro archivo; use una clave nueva"
    ),
    "PAYLOAD_TOO_LARGE": "El cuerpo de la solicitud supera el límite permitido",
    "FORBIDDEN": "No permitido",
    "HTTP_ERROR": "La solicitud falló",
    "INTERNAL_ERROR": "Error interno del servidor",
    "INVALID_CLASS_CODE": "class_code no es una clase de esta predicción",
    "INVALID_CODE": "El código es incorrecto, ha caducado o ya se usó",
    "INVALID_CORRECT_CLASS": "La clase correcta no es una clase del modelo o coincide con "
    "la clase predicha",
    "INVALID_CREDENTIALS": "Correo o contraseña incorrectos",
    "INVALID_IMAGE": "El archivo no es una imagen legible",
    "INVALID_MODEL": "El modelo no es válido",
    "INVALID_TOKEN": "El token de renovación no es válido, ha caducado o ya se usó",
    "LAST_ADMIN": "No se puede desactivar ni degradar al último administrador activo",
    "METHOD_NOT_ALLOWED": "Método no permitido",
    "MODEL_ACTIVE": "La versión activa no se puede retirar",
    "MODEL_EXISTS": "Esta versión ya está registrada",
    "MODEL_NOT_STAGED": "Solo una versión preparada puede ejecutarse en sombra",
    "MODEL_RETIRED": "Una versión retirada no se puede activar",
    "MODEL_UNAVAILABLE": "El modelo no está disponible; inténtelo de nuevo",
    "MODEL_VERSION_GONE": "El modelo que hizo esta predicción ya no está en uso; no se "
    "puede calcular su mapa de calor",
    "NOT_ACCEPTABLE": "No aceptable",
    "NOT_AUTHENTICATED": "No autenticado",
    "NOT_FOUND": "No encontrado",
    "RATE_LIMITED": "Demasiadas solicitudes; inténtelo más tarde",
    "REGISTRY_BUSY": "El registro de modelos cambió mientras tanto; inténtelo de nuevo",
    "SERVICE_UNAVAILABLE": "El servicio no está disponible; inténtelo de nuevo",
    "SHUTTING_DOWN": "El servicio se está deteniendo; inténtelo de nuevo",
    "STORAGE_UNAVAILABLE": "El almacén de imágenes no está disponible; inténtelo de nuevo",
    "UNSUPPORTED_DICOM": "Este archivo DICOM no es una fotografía oftálmica aceptada",
    "UNSUPPORTED_MEDIA_TYPE": "Solo se aceptan archivos JPEG, PNG y DICOM",
    "VALIDATION_ERROR": "La solicitud no es válida",
}

# Exact details (English as raised) that say more than their code's message.
SPANISH_BY_DETAIL: dict[str, str] = {
    "Prediction not found": "Predicción no encontrada",
    "Image not found": "Imagen no encontrada",
    "User not found": "Usuario no encontrado",
    "No such model version": "No existe esa versión del modelo",
    "Administrators only": "Solo para administradores",
    "The file is empty.": "El archivo está vacío.",
    "date_from is after date_to": "date_from es posterior a date_to",
    "Heatmaps are unavailable": "Los mapas de calor no están disponibles",
}


def from_accept_language(header: str | None) -> Language | None:
    """The supported language the client prefers most (q-values honoured), or None."""
    if not header:
        return None
    best: tuple[float, int, str] | None = None
    for position, part in enumerate(header.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        if primary not in SUPPORTED:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        candidate = (-quality, position, primary)
        if best is None or candidate < best:
            best = candidate
    return None if best is None else ("es" if best[2] == "es" else "en")


def remember_locale(request: Request, locale: str) -> None:
    """Called once the caller is known: their locale is the fallback language. Kept in
    the request's own scope (the lifespan `state` may be shared between requests)."""
    request.scope[_SCOPE_KEY] = locale


def language_of(request: Request) -> Language:
    chosen = from_accept_language(request.headers.get("accept-language"))
    if chosen is not None:
        return chosen
    locale = request.scope.get(_SCOPE_KEY)
    if locale in SUPPORTED:
        return locale  # type: ignore[no-any-return]
    return DEFAULT


def localize(language: Language, code: str, detail: Any) -> Any:
    """`detail` for a reader of `language`; lists (validation problems) unchanged."""
    if language == "en" or not isinstance(detail, str):
        return detail
    if exact := SPANISH_BY_DETAIL.get(detail):
        return exact
    general = SPANISH_BY_CODE.get(code)
    if general is None:
        return detail
    if detail.casefold() in _GENERIC_DETAILS:
        return general
    # A detail with specifics (which class, which file, the validation's reason) keeps
    # them after the code's Spanish message: the reader still learns what to fix.
    return f"{general}: {detail}"


def _default_details() -> dict[str, str]:
    """Each code's usual English detail (KnownError.message): it says nothing the code's
    Spanish message does not."""
    found: dict[str, str] = {}
    pending: list[type[KnownError]] = [KnownError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if isinstance(cls.message, str):
            found.setdefault(cls.code, cls.message)
    return found


# The usual details and the framework's reason phrases ("Not Found"): nothing to keep.
_GENERIC_DETAILS = frozenset(
    text.casefold()
    for text in (*_default_details().values(), *(status.phrase for status in HTTPStatus))
)


def localized(request: Request, code: str, detail: Any) -> Any:
    return localize(language_of(request), code, detail)
