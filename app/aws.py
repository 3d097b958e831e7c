"""S3 client settings and error reading, shared by the image store and the weights fetch."""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from app.config import Settings


def s3_client_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "region_name": settings.aws_region,
        "config": Config(
            connect_timeout=3,
            read_timeout=20,
            retries={"max_attempts": 2, "mode": "standard"},
            signature_version="s3v4",
        ),
    }
    if settings.s3_endpoint_url:
        kwargs["endpoint_url"] = settings.s3_endpoint_url
    if settings.aws_access_key_id is not None:
        kwargs["aws_access_key_id"] = settings.aws_access_key_id.get_secret_value()
    if settings.aws_secret_access_key is not None:
        kwargs["aws_secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
    return kwargs


_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def is_not_found(exc: ClientError) -> bool:
    """The object (or bucket) does not exist, as opposed to any other refusal."""
    return str(exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_CODES
