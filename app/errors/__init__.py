"""The errors services and dependencies raise, each with its HTTP status and stable code.

They live below the API layer so that services never import from app.api; the HTTP
handlers that turn them into `{"detail", "code"}` bodies are in app/api/errors.py.

Each error a client can tell apart is one `KnownError` subclass with three class
attributes: `status_code`, `code` (UPPER_SNAKE) and `message` (the usual detail, also the
example in the schema). Routes declare the classes they can raise with
`app.api.errors.error_responses(...)`, which turns them into the schema's per-operation
code enums; tests/test_error_codes.py checks that every code a route answers is declared.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error the client should see, with a stable code.

    Raise a `KnownError` subclass, where the error arises (app/inference raises these
    too): only those can be declared on a route, and only this module and app/api/ spell
    out HTTP statuses (tests/test_layers.py)."""

    status_code: int = 500
    code: str = "INTERNAL_ERROR"
    message: str = "Internal server error"

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.headers = headers


class KnownError(AppError):
    """An error with a fixed status and code (class attributes): the unit of the
    `error_responses(...)` table."""

    status_code = 500
    code = "INTERNAL_ERROR"
    message = "Internal server error"

    def __init__(self, detail: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status_code, self.code, detail or self.message, headers)

    @classmethod
    def example_detail(cls) -> Any:
        """The `detail` of this error's example in the schema."""
        return cls.message


# --------------------------------------------------------------------------- 400


class InvalidCode(KnownError):
    status_code = 400
    code = "INVALID_CODE"
    message = "The code is wrong, expired or already used"


class WrongCurrentPassword(KnownError):
    status_code = 400
    code = "INVALID_CREDENTIALS"
    message = "The current password is incorrect"


# --------------------------------------------------------------------------- 401


class NotAuthenticated(KnownError):
    status_code = 401
    code = "NOT_AUTHENTICATED"
    message = "Not authenticated"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class InvalidCredentials(KnownError):
    status_code = 401
    code = "INVALID_CREDENTIALS"
    message = "Incorrect email or password"


class InvalidRefreshToken(KnownError):
    status_code = 401
    code = "INVALID_TOKEN"
    message = "The refresh token is invalid, expired or spent"


# --------------------------------------------------------------------------- 403


class Forbidden(KnownError):
    status_code = 403
    code = "FORBIDDEN"
    message = "Not allowed"


class EmailNotVerified(KnownError):
    status_code = 403
    code = "EMAIL_NOT_VERIFIED"
    message = "Verify the email address first (see /auth/verify)"


class CsrfRejected(KnownError):
    """A request that presents the refresh-token cookie without the web app's header
    (X-OcuPredict-Client: web) or from another origin: a cross-site request forgery."""

    status_code = 403
    code = "CSRF_REJECTED"
    message = "The session cookie is accepted only from the web app itself"


class AccountDisabled(KnownError):
    status_code = 403
    code = "ACCOUNT_DISABLED"
    message = "This account has been disabled by an administrator"


# --------------------------------------------------------------------------- 404, 409


class NotFound(KnownError):
    status_code = 404
    code = "NOT_FOUND"
    message = "Not found"


class EmailTaken(KnownError):
    status_code = 409
    code = "EMAIL_TAKEN"
    message = "An account with this email already exists"


class ModelVersionGone(KnownError):
    """A heatmap asked of a prediction made by a model that is no longer running."""

    status_code = 409
    code = "MODEL_VERSION_GONE"
    message = (
        "The model that made this prediction is no longer the one running; "
        "its heatmap cannot be computed"
    )


class IdempotencyKeyInUse(KnownError):
    """The first request with this key is still at work after the wait; retry later."""

    status_code = 409
    code = "IDEMPOTENCY_KEY_IN_USE"
    message = "A request with this Idempotency-Key is still being processed; retry shortly."


class LastAdmin(KnownError):
    status_code = 409
    code = "LAST_ADMIN"
    message = "The last active administrator cannot be disabled or demoted"


# --------------------------------------------------------------------------- 413, 415


def too_large_message(limit_mb: int) -> str:
    return f"The file is larger than the {limit_mb} MB limit."


class FileTooLarge(KnownError):
    status_code = 413
    code = "FILE_TOO_LARGE"
    message = too_large_message(15)

    def __init__(self, limit_mb: int) -> None:
        super().__init__(too_large_message(limit_mb))


def payload_too_large_message(limit_kb: int) -> str:
    return f"The request body is larger than the {limit_kb} KB limit."


class PayloadTooLarge(KnownError):
    """A body over MAX_BODY_KB on a route that takes no file."""

    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    message = payload_too_large_message(1024)

    def __init__(self, limit_kb: int) -> None:
        super().__init__(payload_too_large_message(limit_kb))


class ImageRejected(AppError):
    """An upload refused as an image, raised where the image is read (app/inference): the
    subclasses below say how. Callers that give a refusal another meaning (a model's smoke
    test, the legacy import's report) catch this; the HTTP edge answers it as it is."""


class UnsupportedMediaType(KnownError, ImageRejected):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    message = "Only JPEG, PNG and DICOM files are accepted."


class UnsupportedDicom(KnownError, ImageRejected):
    """A DICOM file that is not an accepted photograph (other SOP class such as an OCT
    volume, other transfer syntax, no pixel data, other bit depth); detail says which."""

    status_code = 415
    code = "UNSUPPORTED_DICOM"
    message = "This DICOM file is not an accepted ophthalmic photograph."


# --------------------------------------------------------------------------- 422


class ValidationFailed(KnownError):
    """422 VALIDATION_ERROR: the request does not validate (FastAPI's validation errors
    are answered with this code too, with the list of problems as detail)."""

    status_code = 422
    code = "VALIDATION_ERROR"
    message = "The request does not validate"

    @classmethod
    def example_detail(cls) -> Any:
        return [{"type": "missing", "loc": ["body", "email"], "msg": "Field required"}]


class InvalidImage(KnownError, ImageRejected):
    status_code = 422
    code = "INVALID_IMAGE"
    message = "The file is not a readable image."


class IdempotencyKeyReused(KnownError):
    """The Idempotency-Key was used by this user for a different upload."""

    status_code = 422
    code = "IDEMPOTENCY_KEY_REUSED"
    message = "This Idempotency-Key was used for a different file; use a new key."


class InvalidCorrectClass(KnownError):
    status_code = 422
    code = "INVALID_CORRECT_CLASS"
    message = "correct_class is not a class of the model, or equals the predicted class"


class InvalidClassCode(KnownError):
    status_code = 422
    code = "INVALID_CLASS_CODE"
    message = "class_code is not a class of this prediction"


# --------------------------------------------------------------------------- 429, 503


class RateLimited(KnownError):
    status_code = 429
    code = "RATE_LIMITED"
    message = "Too many requests; try again later"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(None, {"Retry-After": str(max(1, retry_after_seconds))})


class ServiceUnavailable(AppError):
    """503 with a code of the caller's choosing; prefer the declared subclasses below."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(503, code, detail)


class ModelUnavailableError(KnownError):
    status_code = 503
    code = "MODEL_UNAVAILABLE"
    message = "The model is unavailable; try again"


class ModelUnavailable(ModelUnavailableError):
    """The model cannot serve: weights cannot be fetched or loaded, a manifest is invalid,
    the backend failed, or the classifier is closed; raised where it happens (app/inference).

    The client sees MODEL_UNAVAILABLE with the class's message only: the reason (`str()` of
    the error, for logs) may name paths, buckets and file contents. Where a failure means
    something else (a model refused at registration), the caller says so."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.args = (reason,)

    @property
    def reason(self) -> str:
        return str(self.args[0])


class StorageUnavailableError(KnownError):
    """What app.storage.StorageUnavailable becomes at the HTTP edge."""

    status_code = 503
    code = "STORAGE_UNAVAILABLE"
    message = "The image store is unavailable; try again"


class DatabaseUnavailable(KnownError):
    """The database refused or dropped the connection (restart, failover); retry."""

    status_code = 503
    code = "DATABASE_UNAVAILABLE"
    message = "The database is unavailable; try again"


class ShuttingDown(KnownError):
    """The process drains on SIGTERM: it takes no new upload (nothing was stored)."""

    status_code = 503
    code = "SHUTTING_DOWN"
    message = "The service is shutting down; try again"


# The model registry's and the learning loop's refusals (app.errors.models).
from app.errors.models import DatasetOverlap as DatasetOverlap  # noqa: E402
from app.errors.models import GatesNotMet as GatesNotMet  # noqa: E402
from app.errors.models import InvalidModel as InvalidModel  # noqa: E402
from app.errors.models import ModelActive as ModelActive  # noqa: E402
from app.errors.models import ModelExists as ModelExists  # noqa: E402
from app.errors.models import ModelNotStaged as ModelNotStaged  # noqa: E402
from app.errors.models import ModelRetired as ModelRetired  # noqa: E402
from app.errors.models import RegistryBusy as RegistryBusy  # noqa: E402
from app.errors.models import ShadowInsufficient as ShadowInsufficient  # noqa: E402
from app.errors.models import TrainingJobFinished as TrainingJobFinished  # noqa: E402
from app.errors.models import UnknownRecipe as UnknownRecipe  # noqa: E402
