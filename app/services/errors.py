"""Auth failures with their stable API codes."""

from __future__ import annotations

from app.api.errors import AppError


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
