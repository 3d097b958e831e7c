"""`ocupredict import-legacy`: the earlier Flask back-end's accounts, history and images.

Reads the legacy `users` and `prediction_history` tables (app.legacy.schema) and the
images they name in the old bucket, and writes this service's rows and objects:

- Accounts first, all at once (a clinic has hundreds, not millions): emails normalised
  as login does, case duplicates left out (the oldest kept; the history of a duplicate
  goes to the kept account, the same mailbox), the werkzeug hash kept as it is (see
  app.security.legacy_hashes).
- Then the history, `batch` rows at a time in id order: each row's values are mapped
  (app.legacy.mapping), its image fetched, decoded and checked by the same code as an
  upload, stored under this service's key scheme, and the page's good rows inserted in
  one transaction.

Idempotent and resumable: every imported row keeps its legacy id (unique), and the
image key is derived from the legacy id (a uuid5), so a run that was killed between
storing an image and committing its row overwrites the same object when run again,
instead of leaving an orphan. A row that fails is reported and never written; an object
stored for a row whose insert then fails is deleted. A failure of the source or target
themselves (unreachable, refused) stops the run: run it again to resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

import aioboto3
import aiohttp
import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import func, insert, make_url, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.aws import is_not_found, s3_client_kwargs
from app.config import Settings
from app.db.base import utcnow
from app.db.models import Prediction, User
from app.db.session import SessionFactory, make_engine, make_sessionmaker
from app.errors import ImageRejected
from app.inference import DecodedImage, decode_upload
from app.kit.text import clean_filename, normalize_email
from app.legacy import schema
from app.legacy.mapping import (
    CLASS_CODES,
    LegacyAccount,
    Reason,
    RowRejected,
    as_utc,
    chunks,
    class_code,
    display_name,
    map_feedback,
    parse_probabilities,
    split_case_duplicates,
)
from app.legacy.report import ImportReport
from app.security.legacy_hashes import UNUSABLE_PASSWORD, is_legacy_hash
from app.storage import ImageStore, StorageUnavailable, build_image_store, new_image_key

log = logging.getLogger(__name__)

MODEL_VERSION = "legacy"  # model.version of every imported prediction
_KEY_NAMESPACE = uuid.UUID("6f1d8a52-3c1b-4e0e-9a57-0c6b3f1e2d41")
_IN_CHUNK = 500  # ids per IN (...) lookup


class ImportAborted(Exception):
    """The source or the target cannot be used; nothing half-written, run again to resume."""


class Progress(Protocol):
    def start(self, table: str, total: int) -> None: ...

    def advance(self, table: str, rows: int) -> None: ...


class NoProgress:
    def start(self, table: str, total: int) -> None:
        return None

    def advance(self, table: str, rows: int) -> None:
        return None


@dataclass(frozen=True)
class ImportOptions:
    source_url: str
    source_bucket: str
    dry_run: bool = False
    batch: int = 500
    concurrency: int = 16  # images fetched, decoded and stored at once


def legacy_image_key(legacy_id: int, extension: str, created_at: Any) -> str:
    """This service's key for the image of legacy prediction `legacy_id`: the same key on
    every run (so a re-run overwrites what a killed run stored)."""
    name = uuid.uuid5(_KEY_NAMESPACE, f"prediction_history:{legacy_id}")
    return new_image_key(extension, created_at, name=name)


async def import_legacy(
    settings: Settings, options: ImportOptions, progress: Progress | None = None
) -> ImportReport:
    """Run one import; the report says what happened (also when it stopped early, in
    which case `report.aborted` says why)."""
    source_url = schema.async_source_url(options.source_url)
    report = ImportReport(
        source=make_url(options.source_url).render_as_string(hide_password=True),
        bucket=options.source_bucket,
        dry_run=options.dry_run,
    )
    source = create_async_engine(source_url)
    target = make_engine(settings)
    try:
        async with AsyncExitStack() as stack:
            s3 = await stack.enter_async_context(
                aioboto3.Session().client("s3", **s3_client_kwargs(settings))
            )
            store: ImageStore | None = None
            if not options.dry_run:
                store = await build_image_store(settings)
                stack.push_async_callback(store.aclose)
            sessions = make_sessionmaker(target)
            job = LegacyImportJob(settings, options, report, source, sessions, s3, store)
            await job.execute(progress or NoProgress())
    except ImportAborted as exc:
        report.aborted = str(exc)
    finally:
        await source.dispose()
        await target.dispose()
    return report


@dataclass(frozen=True, slots=True)
class _Mapped:
    """A legacy history row's values, mapped; the image is still to be copied."""

    legacy_id: int
    image_s3_key: str | None
    values: dict[str, Any]


class LegacyImportJob:
    """One run of `ocupredict import-legacy`: the source and target connections, the
    options and the report it fills, and the steps (accounts, then predictions in
    batches, each resumable) that move the earlier back-end's data in."""

    def __init__(
        self,
        settings: Settings,
        options: ImportOptions,
        report: ImportReport,
        source: AsyncEngine,
        sessions: SessionFactory,
        s3: Any,
        store: ImageStore | None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.report = report
        self.source = source
        self.sessions = sessions
        self.s3 = s3
        self.store = store
        self.limit = asyncio.Semaphore(options.concurrency)
        self.owners: dict[int, int] = {}  # legacy user id -> users.id (0 in a dry run)
        self.not_imported: dict[int, str] = {}  # legacy user id -> why it is not here

    async def execute(self, progress: Progress) -> None:
        try:
            await self.import_users(progress)
            started = time.perf_counter()
            try:
                await self.import_history(progress)
            finally:
                self.report.history_seconds = time.perf_counter() - started
        except StorageUnavailable as exc:
            raise ImportAborted(f"this service's image store is unavailable ({exc})") from exc
        except DBAPIError as exc:
            raise ImportAborted(f"database error: {type(exc.orig).__name__}: {exc.orig}") from exc

    # ------------------------------------------------------------------ accounts

    async def import_users(self, progress: Progress) -> None:
        legacy = schema.users
        async with self.source.connect() as conn:
            rows = (await conn.execute(select(legacy).order_by(legacy.c.id))).all()
        self.report.users.read = len(rows)
        progress.start("users", len(rows))
        by_id = {row.id: row for row in rows}
        accounts = [LegacyAccount(r.id, normalize_email(r.email), r.created_at) for r in rows]
        kept, duplicates = split_case_duplicates(accounts)
        existing, taken = await self._existing_accounts(kept)

        new: list[dict[str, Any]] = []
        for account in kept:
            here = existing.get(account.id)
            if here is not None:
                user_id, email = here
                if email != account.email:
                    raise ImportAborted(
                        f"legacy user {account.id} was imported as {email!r}, but this source "
                        f"has {account.email!r}: is this the legacy database imported before?"
                    )
                self.owners[account.id] = user_id
                self.report.users.already += 1
            elif account.email in taken:
                self._user_failed(account.id, "EMAIL_TAKEN", "an account with this email exists")
            else:
                new.append(self._user_values(by_id[account.id], account.email))
        for legacy_id, oldest in duplicates.items():
            detail = f"same email as legacy user {oldest.id} (older, kept)"
            self.report.skip("users", legacy_id, "CASE_DUPLICATE", detail)
        await self._insert_users(new)
        for legacy_id, oldest in duplicates.items():  # their history goes to the kept account
            if oldest.id in self.owners:
                self.owners[legacy_id] = self.owners[oldest.id]
            else:
                self.not_imported[legacy_id] = f"nor was legacy user {oldest.id}, kept for it"
        progress.advance("users", len(rows))

    def _user_values(self, row: Any, email: str) -> dict[str, Any]:
        password = row.password or ""
        if not is_legacy_hash(password):
            self.report.unusable_passwords += 1
            password = UNUSABLE_PASSWORD
        now = utcnow()
        return {
            "legacy_id": row.id,
            "email": email,
            "name": display_name(row.name, email),
            "password_hash": password,
            "locale": "es",
            "role": "doctor",
            "is_verified": bool(row.is_verified),
            "created_at": as_utc(row.created_at, now),
            "updated_at": now,
        }

    def _user_failed(self, legacy_id: int, reason: Reason, detail: str) -> None:
        self.report.fail("users", legacy_id, reason, detail)
        self.not_imported[legacy_id] = reason

    async def _existing_accounts(
        self, kept: Sequence[LegacyAccount]
    ) -> tuple[dict[int, tuple[int, str]], set[str]]:
        """({legacy id: (users.id, email)} of earlier imports, emails taken by other accounts)."""
        async with self.sessions() as session:
            result = await session.execute(
                select(User.legacy_id, User.id, User.email).where(User.legacy_id.is_not(None))
            )
            existing = {
                legacy_id: (user_id, email) for legacy_id, user_id, email in result if legacy_id
            }
            imported_emails = {email for _, email in existing.values()}
            wanted = [a.email for a in kept if a.id not in existing]
            taken: set[str] = set()
            for part in chunks(wanted, _IN_CHUNK):
                emails = await session.scalars(select(User.email).where(User.email.in_(part)))
                taken.update(email for email in emails if email not in imported_emails)
        return existing, taken

    async def _insert_users(self, new: list[dict[str, Any]]) -> None:
        counts = self.report.users
        if self.options.dry_run:
            self.owners.update((values["legacy_id"], 0) for values in new)
            counts.imported += len(new)
            return
        for start in range(0, len(new), self.options.batch):
            part = new[start : start + self.options.batch]
            if await self._insert_all(User, part):
                counts.imported += len(part)
            else:  # a unique index refused one: find it, keep the rest
                for values in part:
                    if await self._insert_all(User, [values]):
                        counts.imported += 1
                    else:
                        await self._user_conflict(values)
            await self._learn_owners([values["legacy_id"] for values in part])

    async def _user_conflict(self, values: dict[str, Any]) -> None:
        """An insert refused by a unique index: a concurrent run, or a new registration."""
        async with self.sessions() as session:
            there = await session.scalar(
                select(User.legacy_id).where(User.email == values["email"])
            )
        if there == values["legacy_id"]:
            self.report.users.already += 1
        else:
            detail = "an account with this email exists"
            self._user_failed(values["legacy_id"], "EMAIL_TAKEN", detail)

    async def _learn_owners(self, legacy_ids: Sequence[int]) -> None:
        async with self.sessions() as session:
            result = await session.execute(
                select(User.legacy_id, User.id).where(User.legacy_id.in_(legacy_ids))
            )
            self.owners.update((legacy_id, user_id) for legacy_id, user_id in result if legacy_id)

    async def _insert_all(
        self, model: type[User] | type[Prediction], rows: list[dict[str, Any]]
    ) -> bool:
        """One transaction for all `rows`; False (nothing written) when a unique index or
        foreign key refuses one of them."""
        if not rows:
            return True
        async with self.sessions() as session:
            try:
                await session.execute(insert(model), rows)
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return False
        return True

    # ------------------------------------------------------------------ history

    async def import_history(self, progress: Progress) -> None:
        legacy = schema.prediction_history
        async with self.source.connect() as conn:
            total = int(await conn.scalar(select(func.count()).select_from(legacy)) or 0)
        progress.start("prediction_history", total)
        last_id = 0
        while True:
            async with self.source.connect() as conn:
                page = (
                    await conn.execute(
                        select(legacy)
                        .where(legacy.c.id > last_id)
                        .order_by(legacy.c.id)
                        .limit(self.options.batch)
                    )
                ).all()
            if not page:
                return
            last_id = page[-1].id
            await self._import_page(page)
            progress.advance("prediction_history", len(page))

    async def _import_page(self, page: Sequence[Any]) -> None:
        counts = self.report.history
        counts.read += len(page)
        async with self.sessions() as session:
            here = set(
                await session.scalars(
                    select(Prediction.legacy_id).where(
                        Prediction.legacy_id.in_([row.id for row in page])
                    )
                )
            )
        mapped: list[_Mapped] = []
        for row in page:
            if row.id in here:
                counts.already += 1
                continue
            try:
                mapped.append(self._map(row))
            except RowRejected as exc:
                self.report.fail("prediction_history", row.id, exc.reason, exc.detail)
        # Every copy runs to its end (no task left storing objects behind our back).
        outcomes = await asyncio.gather(
            *(self._with_image(item) for item in mapped), return_exceptions=True
        )
        ready = [values for values in outcomes if isinstance(values, dict)]
        errors = [error for error in outcomes if isinstance(error, BaseException)]
        try:
            if errors:
                raise errors[0]
            if self.options.dry_run:
                counts.imported += len(ready)
                return
            await self._insert_predictions(ready)
        except Exception:
            # Stopping (store or database failing): this page's rows are not all committed.
            # Their keys are deterministic, so a re-run would reuse the objects; still,
            # leave none behind that no row names.
            await self._discard([values["image_key"] for values in ready], check=True)
            raise

    def _map(self, row: Any) -> _Mapped:
        owner = self.owners.get(row.user_id)
        if owner is None:
            why = self.not_imported.get(row.user_id, "no such legacy user")
            raise RowRejected("OWNER_NOT_IMPORTED", f"legacy user {row.user_id}: {why}")
        code = class_code(row.predicted_class_name)
        probabilities = parse_probabilities(row.probabilities, code)
        feedback = map_feedback(row.doctor_feedback)
        created_at = as_utc(row.created_at, utcnow())
        return _Mapped(
            legacy_id=row.id,
            image_s3_key=row.image_s3_key,
            values={
                "legacy_id": row.id,
                "user_id": owner,
                "created_at": created_at,
                "original_filename": clean_filename(row.image_filename),
                "patient_ref": None,
                "eye": "unknown",
                "predicted_class": code,
                "probability": probabilities[CLASS_CODES.index(code)],
                "probabilities": probabilities,
                "class_codes": list(CLASS_CODES),
                "model_version": MODEL_VERSION,
                "model_demo": False,
                "backend": "torch",
                "inference_ms": 0.0,
                "feedback_verdict": feedback.verdict,
                "feedback_correct_class": None,
                "feedback_comment": feedback.comment,
                "feedback_updated_at": created_at if feedback.verdict else None,
            },
        )

    async def _with_image(self, item: _Mapped) -> dict[str, Any] | None:
        """The row's values with its image's metadata, the image stored; None if it failed."""
        async with self.limit:
            try:
                data = await self._fetch(item.image_s3_key)
                decoded = await anyio.to_thread.run_sync(self._decode, data)
            except RowRejected as exc:
                self.report.fail("prediction_history", item.legacy_id, exc.reason, exc.detail)
                return None
            created_at = item.values["created_at"]
            key = legacy_image_key(item.legacy_id, decoded.extension, created_at)
            if self.store is not None:
                await self.store.put(key, data, decoded.content_type)
        return {
            **item.values,
            "image_key": key,
            "content_type": decoded.content_type,
            "size_bytes": len(data),
            "width": decoded.width,
            "height": decoded.height,
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    async def _fetch(self, key: str | None) -> bytes:
        bucket = self.options.source_bucket
        if not key:
            raise RowRejected("MISSING_IMAGE", "the row names no image (image_s3_key is NULL)")
        try:
            response = await self.s3.get_object(Bucket=bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            async with response["Body"] as body:
                if size > self.settings.max_upload_bytes:
                    raise RowRejected(
                        "IMAGE_TOO_LARGE",
                        f"{size} bytes, over MAX_UPLOAD_MB={self.settings.max_upload_mb}",
                    )
                data: bytes = await body.read()
        except ClientError as exc:
            if is_not_found(exc):
                raise RowRejected("MISSING_IMAGE", f"no object {key!r} in {bucket!r}") from exc
            code = exc.response.get("Error", {}).get("Code", "?")
            raise ImportAborted(f"the legacy bucket {bucket!r} refused GetObject ({code})") from exc
        except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ImportAborted(f"the legacy bucket {bucket!r} is unreachable ({exc})") from exc
        return data

    def _decode(self, data: bytes) -> DecodedImage:
        """The same checks as an upload (JPEG/PNG from the bytes, size, pixels, decodable)."""
        try:
            return decode_upload(data, max_pixels=self.settings.max_image_pixels, fast_jpeg=True)
        except ImageRejected as exc:
            raise RowRejected("UNDECODABLE_IMAGE", exc.detail) from exc

    async def _insert_predictions(self, ready: list[dict[str, Any]]) -> None:
        counts = self.report.history
        if await self._insert_all(Prediction, ready):
            counts.imported += len(ready)
            return
        for values in ready:  # something in the page conflicts: find it, keep the rest
            if await self._insert_all(Prediction, [values]):
                counts.imported += 1
                continue
            async with self.sessions() as session:
                there = await session.scalar(
                    select(Prediction.image_key).where(Prediction.legacy_id == values["legacy_id"])
                )
            if there == values["image_key"]:  # a concurrent run imported it: same object
                counts.already += 1
                continue
            await self._discard([values["image_key"]], check=False)
            self.report.fail(
                "prediction_history",
                values["legacy_id"],
                "OWNER_NOT_IMPORTED",
                "the database refused the row (its owner account is gone?)",
            )

    async def _discard(self, keys: list[str], *, check: bool) -> None:
        """Delete stored objects whose rows were not written (with `check`, only those no
        row names: the database may have committed after all)."""
        if self.store is None or not keys:
            return
        try:
            if check:
                async with self.sessions() as session:
                    named = set(
                        await session.scalars(
                            select(Prediction.image_key).where(Prediction.image_key.in_(keys))
                        )
                    )
                keys = [key for key in keys if key not in named]
            for key in keys:
                await self.store.delete(key)
        except Exception:
            log.warning("could not remove %d image(s) of unwritten rows", len(keys), exc_info=True)
