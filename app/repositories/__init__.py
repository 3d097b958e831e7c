"""Async data access, one class per aggregate; each takes an AsyncSession and never commits."""

from __future__ import annotations

from app.repositories.codes import CodeRepository
from app.repositories.rate_limits import RateLimitRepository
from app.repositories.refresh_tokens import RefreshTokenRepository
from app.repositories.users import UserRepository

__all__ = ["CodeRepository", "RateLimitRepository", "RefreshTokenRepository", "UserRepository"]
