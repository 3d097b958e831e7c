"""The errors services and dependencies raise, each with its HTTP status and stable code.

They live below the API layer so that services never import from app.api; the HTTP
handlers that turn them into `{"detail", "code"}` bodies are in app/api/errors.py.
"""

from __future__ import annotations


class AppError(Exception):
    """An error the client should see, with a stable code."""

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


class NotFound(AppError):
    def __init__(self, detail: str = "Not found") -> None:
        super().__init__(404, "NOT_FOUND", detail)


class NotAuthenticated(AppError):
    def __init__(self, detail: str = "Not authenticated") -> None:
        super().__init__(401, "NOT_AUTHENTICATED", detail, {"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    def __init__(self, detail: str = "Not allowed") -> None:
        super().__init__(403, "FORBIDDEN", detail)


def too_large_message(limit_mb: int) -> str:
    return f"The file is larger than the {limit_mb} MB limit."


class FileTooLarge(AppError):
    def __init__(self, limit_mb: int) -> None:
        super().__init__(413, "FILE_TOO_LARGE", too_large_message(limit_mb))


class RateLimited(AppError):
    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            429,
            "RATE_LIMITED",
            "Too many requests; try again later",
            {"Retry-After": str(max(1, retry_after_seconds))},
        )


class ServiceUnavailable(AppError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(503, code, detail)


class InvalidCredentials(AppError):
    def __init__(self) -> None:
        super().__init__(401, "INVALID_CREDENTIALS", "Incorrect email or password")


class WrongCurrentPassword(AppError):
    def __init__(self) -> None:
        super().__init__(400, "INVALID_CREDENTIALS", "The current password is incorrect")


class EmailNotVerified(AppError):
    def __init__(self) -> None:
        super().__init__(
            403, "EMAIL_NOT_VERIFIED", "Verify the email address first (see /auth/verify)"
        )


class EmailTaken(AppError):
    def __init__(self) -> None:
        super().__init__(409, "EMAIL_TAKEN", "An account with this email already exists")


class InvalidCode(AppError):
    def __init__(self) -> None:
        super().__init__(400, "INVALID_CODE", "The code is wrong, expired or already used")


class InvalidRefreshToken(AppError):
    def __init__(self) -> None:
        super().__init__(401, "INVALID_TOKEN", "The refresh token is invalid, expired or spent")


class InvalidModel(AppError):
    """Weights or manifest that the model registry refuses; the detail says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, "INVALID_MODEL", detail)


class Conflict(AppError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(409, code, detail)
