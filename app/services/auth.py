"""Account and session flows behind the auth router.

Anti-enumeration: unknown and known emails get the same answers (login 401, verify and
reset 400, resend and forgot 202) after the same work (a dummy Argon2 verification, the
same rate-limit bookkeeping). EMAIL_NOT_VERIFIED and ACCOUNT_DISABLED are only said after
a correct password.
Every login, failed or not, and every password, session and verification change leaves an
audit event (app.services.audit) in the transaction that commits it.
Each flow commits its own writes; failures that count toward a limit are committed
before the error is raised. Each flow is one transaction that runs again from its first
read when the database aborts it transiently (@retried, app.db.retry: deadlocks, Galera
certification conflicts); the mail of a code goes out only after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db.base import utcnow
from app.db.models import User
from app.db.retry import retried
from app.db.session import SessionFactory
from app.errors import (
    AccountDisabled,
    AppError,
    EmailNotVerified,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidRefreshToken,
    RateLimited,
    WrongCurrentPassword,
)
from app.kit.text import clean_display_name, normalize_email
from app.mail import CodePurpose
from app.mail.render import DEFAULT_LOCALE
from app.repositories import UserRepository
from app.security import Passwords
from app.services import audit
from app.services.codes import OneTimeCodes
from app.services.login_sessions import IssuedTokens, LoginSessions
from app.services.notify import CodeMailer
from app.services.rate_limit import Keyed, RateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Registration:
    email: str
    password: str
    name: str
    locale: str | None

    def __repr__(self) -> str:
        return "Registration(<redacted>)"


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        passwords: Passwords,
        mail: CodeMailer,
        client_ip: str,
        sessions: SessionFactory,
    ) -> None:
        """`sessions` opens the session of the work done after the answer is sent (the
        codes of /auth/verify/resend and /auth/password/forgot)."""
        self.db = session
        self.settings = settings
        self.db_sessions = sessions
        self.passwords = passwords
        self.mail = mail
        self.ip = client_ip
        self.users = UserRepository(session)
        self.codes = OneTimeCodes(session, settings)
        self.sessions = LoginSessions(session, settings)
        self.limiter = RateLimiter(session, settings)
        self.limits = self.limiter.limits

    def _mail_limits(self, email: str) -> list[Keyed]:
        """The limits on sending a code: per address and per client IP."""
        return [(self.limits.mail_email, email), (self.limits.mail_ip, self.ip)]

    # ------------------------------------------------------------------ registration

    async def register(self, data: Registration) -> User:
        """New account, or a new code for a pending (unverified) one; sends the code."""
        email = normalize_email(data.email)
        # A request the mail limits refuse must not cost an Argon2 hash first. Checked
        # again (and counted) in _register; the read transaction ends before hashing.
        await self.limiter.check(self._mail_limits(email), utcnow())
        await self.db.rollback()
        password_hash = await self.passwords.hash(data.password)
        for attempt in range(2):
            try:
                return await self._register(email, data, password_hash)
            except IntegrityError:  # the same email registered concurrently: go again
                await self.db.rollback()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    @retried("auth.register")
    async def _register(self, email: str, data: Registration, password_hash: str) -> User:
        now = utcnow()
        await self.limiter.consume(self._mail_limits(email), now)
        user = await self.users.get_by_email(email)
        if user is not None and user.is_verified:
            await self.db.commit()
            raise EmailTaken()
        pending = user is not None
        if user is None:
            user = User(email=email, role="doctor", is_verified=False)
            user.name, user.password_hash = data.name, password_hash
            user.locale = data.locale or DEFAULT_LOCALE
            await self.users.add(user)
        # A pending account keeps its first password and name: a repeat registration only
        # sends a new code. Replacing them let anyone who knew the address take the
        # account over once its owner verified it. The password was hashed anyway (the
        # same work either way), and the answer echoes what was sent, as for a new
        # account: it tells nobody the address is pending, nor whose it is.
        answer = user
        if pending:
            answer = User(
                id=user.id,
                email=email,
                name=data.name,
                locale=data.locale or DEFAULT_LOCALE,
                role=user.role,
                is_verified=False,
                created_at=user.created_at,
            )
        code = await self.codes.issue(user, "verify", now)
        await self.db.commit()
        log.info("registration pending verification for user %s", user.id)
        self.mail.send_code(user, "verify", code)
        return answer

    @retried("auth.verify")
    async def verify(self, email: str, code: str) -> IssuedTokens:
        now = utcnow()
        user = await self._redeem_code(email, "verify", code, now)
        if not user.is_active:
            raise AccountDisabled()  # the code proved the address: saying so leaks nothing
        user.is_verified = True
        user.last_login_at = now
        tokens = await self.sessions.start(user, now)
        await self._record(user, "auth.verify", new={"session": tokens.session_id})
        await self.db.commit()
        log.info("user %s verified their email", user.id)
        return tokens

    async def resend_verification(self, email: str) -> None:
        await self._mail_code(email, "verify", lambda user: not user.is_verified)

    # ------------------------------------------------------------------ sessions

    @retried("auth.login")
    async def login(self, email: str, password: str) -> IssuedTokens:
        email = normalize_email(email)
        now = utcnow()
        account = (self.limits.login_account, email)
        try:
            await self.limiter.check([account, (self.limits.failures_ip, self.ip)], now)
        except RateLimited:
            await self._record_login_failure(email, None, "rate_limited")
            await self.db.commit()
            raise
        user = await self.users.get_by_email(email)
        if user is None:
            await self.passwords.dummy_verify(password)
            await self._login_failed(email, None)
        ok, new_hash = await self.passwords.verify_for_login(password, user.password_hash)
        if not ok:
            await self._login_failed(email, user)
        if new_hash is not None:  # new hashing parameters, or an imported legacy hash
            user.password_hash = new_hash
        # Only now, after a correct password, may the answer say more than 401.
        refusal: AppError | None = None
        if not user.is_active:
            refusal = AccountDisabled()
        elif not user.is_verified:
            refusal = EmailNotVerified()
        if refusal is not None:
            await self._record_login_failure(email, user, refusal.code.lower())
            await self.db.commit()
            raise refusal
        await self.limiter.clear(*account)
        user.last_login_at = now
        tokens = await self.sessions.start(user, now)
        await self._record(user, "auth.login", new={"session": tokens.session_id})
        await self.db.commit()
        log.info("user %s logged in", user.id)
        return tokens

    @retried("auth.refresh")
    async def refresh(self, refresh_token: str) -> IssuedTokens:
        try:
            tokens = await self.sessions.rotate(refresh_token, utcnow())
        except InvalidRefreshToken:
            await self.db.commit()  # keep a family revocation from reuse detection
            raise
        await self.db.commit()
        return tokens

    @retried("auth.logout")
    async def logout(self, refresh_token: str) -> None:
        await self.sessions.end(refresh_token, utcnow())
        await self.db.commit()

    # ------------------------------------------------------------------ passwords

    async def forgot_password(self, email: str) -> None:
        await self._mail_code(email, "reset", lambda user: True)

    @retried("auth.password_reset")
    async def reset_password(self, email: str, code: str, new_password: str) -> None:
        now = utcnow()
        user = await self._redeem_code(email, "reset", code, now)
        user.password_hash = await self.passwords.hash(new_password)
        user.is_verified = True  # the code reached the inbox: the address is theirs
        await self.sessions.end_all(user.id, now)
        await self.limiter.clear(self.limits.login_account, user.email)
        await self._record(user, "auth.password_reset")
        await self.db.commit()
        log.info("user %s reset their password; every session revoked", user.id)

    @retried("auth.password_change")
    async def change_password(
        self, user: User, session_id: str, current_password: str, new_password: str
    ) -> None:
        """New password; every other session ends, the caller's (`session_id`) stays."""
        now = utcnow()
        account = (self.limits.login_account, user.email)
        await self.limiter.check([account, (self.limits.failures_ip, self.ip)], now)
        if not await self.passwords.verify(current_password, user.password_hash):
            await self.limiter.hit([account, (self.limits.failures_ip, self.ip)], now)
            await self.db.commit()
            raise WrongCurrentPassword()
        user.password_hash = await self.passwords.hash(new_password)
        await self.sessions.end_all(user.id, now, keep_session=session_id)
        await self._record(user, "auth.password_change", new={"kept_session": session_id})
        await self.db.commit()
        log.info("user %s changed their password; other sessions revoked", user.id)

    # ------------------------------------------------------------------ profile

    @retried("auth.update_me")
    async def update_profile(self, user: User, name: str | None, locale: str | None) -> User:
        if name is not None:
            user.name = name
        if locale is not None:
            user.locale = locale
        await self.db.commit()
        return user

    # ------------------------------------------------------------------ helpers

    async def _record(self, user: User, action: str, new: dict[str, Any] | None = None) -> None:
        """An event about the user's own account, done by them."""
        await audit.record(self.db, action, actor=user, target=("user", user.id), new=new)

    async def _record_login_failure(self, email: str, user: User | None, reason: str) -> None:
        """The attempted email (never the password); the account, when there is one."""
        await audit.record(
            self.db,
            "auth.login_failed",
            actor_email=email,
            target=("user", user.id) if user is not None else None,
            new={"reason": reason},
        )

    async def _login_failed(self, email: str, user: User | None) -> NoReturn:
        now = utcnow()
        await self.limiter.hit(
            [(self.limits.login_account, email), (self.limits.failures_ip, self.ip)], now
        )
        await self._record_login_failure(email, user, "invalid_credentials")
        await self.db.commit()
        log.info("failed login (%s)", f"user {user.id}" if user else "unknown account")
        raise InvalidCredentials()

    @retried("auth.mail_code")
    async def _mail_code(
        self, email: str, purpose: CodePurpose, eligible: Callable[[User], bool]
    ) -> None:
        """Counts against the mail limits whether or not the address has an (eligible)
        account, and answers the same either way (no enumeration). The account is looked
        up only after the answer is sent (`_issue_code`): the request does the same work
        for a known and an unknown address, so its timing tells nothing either."""
        email = normalize_email(email)
        await self.limiter.consume(self._mail_limits(email), utcnow())
        await self.db.commit()
        self.mail.after_response(self._issue_code, email, purpose, eligible)

    async def _issue_code(
        self, email: str, purpose: CodePurpose, eligible: Callable[[User], bool]
    ) -> None:
        async with self.db_sessions() as db:
            user = await UserRepository(db).get_by_email(email)
            if user is None or not eligible(user):
                return
            code = await OneTimeCodes(db, self.settings).issue(user, purpose, utcnow())
            await db.commit()
        await self.mail.deliver_code(user, purpose, code)

    async def _redeem_code(
        self, email: str, purpose: CodePurpose, code: str, now: datetime
    ) -> User:
        """The account whose live `purpose` code this is; anything else is one failure."""
        await self.limiter.check([(self.limits.failures_ip, self.ip)], now)
        user = await self.users.get_by_email(normalize_email(email))
        if user is None or not await self.codes.redeem(user, purpose, code, now):
            await self._code_failed()
        return user

    async def _code_failed(self) -> NoReturn:
        await self.limiter.hit([(self.limits.failures_ip, self.ip)], utcnow())
        await self.db.commit()
        raise InvalidCode()


async def create_admin(
    session: AsyncSession, passwords: Passwords, email: str, name: str, password: str
) -> User:
    """A verified admin (the `ocupredict create-admin` command). A pending (unverified)
    registration of the email is taken over; a verified account raises EmailTaken."""
    users = UserRepository(session)
    email = normalize_email(email)
    user = await users.get_by_email(email)
    if user is not None and user.is_verified:
        raise EmailTaken()
    password_hash = await passwords.hash(password)
    if user is None:
        user = User(email=email)
    user.name, user.password_hash = clean_display_name(name), password_hash
    user.locale = user.locale or DEFAULT_LOCALE
    user.role, user.is_verified = "admin", True
    await users.add(user)
    await session.commit()
    log.info("admin user %s created", user.id)
    return user
