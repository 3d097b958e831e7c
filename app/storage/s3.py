"""S3 image store on aioboto3 (AWS, MinIO, or moto in tests).

One client per process: opened by `S3ImageStore.open` inside an AsyncExitStack (the
lifespan calls it once) and closed by `aclose`. Every botocore/aiohttp failure becomes
StorageUnavailable with a generic message; the original is chained for the logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import datetime
from typing import Any

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.aws import is_not_found, s3_client_kwargs
from app.config import ConfigError, Settings
from app.storage.base import (
    ImageNotFound,
    StorageUnavailable,
    StoredImage,
    check_content_type,
    content_type_for_key,
    is_image_key,
    validate_key,
)

# Fail fast when the endpoint is unreachable: a request must not hang on storage.
# 2 attempts x 2 s connect (+ short backoff) keeps a black-holed endpoint under ~5 s.
_FAST_FAIL = Config(connect_timeout=2, retries={"max_attempts": 2, "mode": "standard"})
_CHECK_DEADLINE_S = 6.0

_TRANSIENT: tuple[type[BaseException], ...] = (
    BotoCoreError,  # endpoint connection, timeouts, missing credentials
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


@contextmanager
def _storage_errors(*, not_found: bool = False) -> Iterator[None]:
    """Map client errors; with not_found=True a missing object raises ImageNotFound."""
    try:
        yield
    except ClientError as exc:
        if not_found and is_not_found(exc):
            raise ImageNotFound() from exc
        # Access denied, bad credentials, missing bucket, 5xx: the store is unusable.
        raise StorageUnavailable() from exc
    except _TRANSIENT as exc:
        raise StorageUnavailable() from exc


class S3ImageStore:
    backend_name: str = "s3"

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        stack: AsyncExitStack | None = None,
        server_side_encryption: bool = False,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._stack = stack
        self._sse = server_side_encryption

    @classmethod
    async def open(cls, settings: Settings) -> S3ImageStore:
        if not settings.aws_s3_bucket:
            raise ConfigError("AWS_S3_BUCKET must be set when STORAGE_BACKEND=s3")
        kwargs = s3_client_kwargs(settings)
        kwargs["config"] = kwargs["config"].merge(_FAST_FAIL)
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(aioboto3.Session().client("s3", **kwargs))
            # Ask for SSE-S3 explicitly only on AWS (it is the AWS default since 2023
            # anyway); MinIO without a KMS rejects the header.
            store = cls(
                client,
                settings.aws_s3_bucket,
                stack=stack.pop_all(),
                server_side_encryption=settings.s3_endpoint_url is None,
            )
        return store

    async def aclose(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        check_content_type(key, content_type)
        extra: dict[str, str] = {"ServerSideEncryption": "AES256"} if self._sse else {}
        with _storage_errors():
            await self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType=content_type, **extra
            )

    async def get(self, key: str) -> StoredImage:
        validate_key(key)
        with _storage_errors(not_found=True):
            response = await self._client.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                data = await body.read()
        content_type = response.get("ContentType") or content_type_for_key(key)
        return StoredImage(data=data, content_type=content_type)

    async def delete(self, key: str) -> None:
        validate_key(key)
        with _storage_errors():  # S3 DeleteObject already succeeds for a missing key
            await self._client.delete_object(Bucket=self._bucket, Key=key)

    async def exists(self, key: str) -> bool:
        validate_key(key)
        try:
            with _storage_errors(not_found=True):
                await self._client.head_object(Bucket=self._bucket, Key=key)
        except ImageNotFound:
            return False
        return True

    async def presigned_url(self, key: str, expires_in: int) -> str | None:
        validate_key(key)
        with _storage_errors():
            url: str = await self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": key},
                ExpiresIn=expires_in,
            )
        return url

    async def keys_stored_before(self, cutoff: datetime) -> AsyncIterator[list[str]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with _storage_errors():
            async for page in paginator.paginate(Bucket=self._bucket, Prefix="images/"):
                keys = [
                    entry["Key"]
                    for entry in page.get("Contents", [])
                    if is_image_key(entry["Key"]) and entry["LastModified"] < cutoff
                ]
                if keys:
                    yield keys

    async def remove_abandoned_writes(self, cutoff: datetime, *, dry_run: bool) -> int:
        return 0  # a PutObject is all or nothing: S3 keeps no half-written object

    async def check(self) -> None:
        # A readiness probe must answer promptly even if the endpoint black-holes packets.
        with _storage_errors():
            async with asyncio.timeout(_CHECK_DEADLINE_S):
                await self._client.head_bucket(Bucket=self._bucket)
