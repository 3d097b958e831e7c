"""Every knob of the service, read from the environment (and `.env` when present).

Development has embedded defaults (SQLite, local image store, console mail, demo
weights). Production refuses defaults that would be unsafe: see `check_production`.
"""

from __future__ import annotations

from functools import cached_property
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.clinical.quality import QualityThresholds
from app.kit.time import known_time_zones

DEV_JWT_SECRET = "dev-insecure-jwt-secret-change-me"  # noqa: S105 - refused in production
# The versioned training recipes shipped with the code (the learning loop's allow-list).
REPOSITORY_RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class ConfigError(RuntimeError):
    """A setting makes the service unsafe or unable to start."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["development", "production"] = "development"
    api_prefix: str = "/api/v1"
    log_level: str = "INFO"
    # text (readable) or json (one object a line, for log search); auto: json in production
    log_format: Literal["auto", "text", "json"] = "auto"

    # The built web app (`make web`: web/dist) served at / by the app and by serve-nginx;
    # when the folder has no index.html the API still starts and the log says how to build it.
    web_dist_dir: Path = Path(__file__).resolve().parent.parent / "web" / "dist"

    # Database
    database_url: str = "sqlite+aiosqlite:///./var/ocupredict.db"
    database_echo: bool = False

    # Tokens
    jwt_secret_key: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "ocupredict"
    jwt_audience: str = "ocupredict-api"
    access_token_minutes: int = Field(15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(30, ge=1, le=365)

    # One-time codes and rate limits
    code_ttl_minutes: int = Field(15, ge=1, le=24 * 60)
    code_max_attempts: int = Field(5, ge=1, le=100)
    login_max_failures: int = Field(10, ge=1)
    login_window_minutes: int = Field(15, ge=1)
    mail_requests_per_window: int = Field(5, ge=1)
    mail_window_minutes: int = Field(15, ge=1)
    # Per client IP (a clinic behind one NAT shares it, so these are looser than per account)
    ip_max_failures: int = Field(50, ge=1)  # failed logins + wrong codes per LOGIN_WINDOW
    mail_requests_per_ip: int = Field(20, ge=1)  # code mails asked for per MAIL_WINDOW

    # Password hashing (Argon2id). Defaults are pwdlib's; lower only for tests.
    password_hash_time_cost: int = Field(3, ge=1, le=20)
    password_hash_memory_kib: int = Field(65536, ge=1024, le=4 * 1024 * 1024)
    password_hash_parallelism: int = Field(4, ge=1, le=16)

    # Image store
    storage_backend: Literal["local", "s3"] = "local"
    local_storage_dir: Path = Path("./var/images")
    aws_s3_bucket: str = ""
    aws_region: str = "us-east-1"
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    s3_endpoint_url: str | None = None
    image_url_ttl_seconds: int = Field(900, ge=30, le=7 * 24 * 3600)

    # Mail
    mail_backend: Literal["console", "smtp"] = "console"
    mail_server: str = "localhost"
    mail_port: int = 587
    mail_username: str = ""
    mail_password: SecretStr = SecretStr("")
    mail_from: str = "no-reply@ocupredict.local"
    mail_from_name: str = "OcuPredict"
    mail_starttls: bool = True
    mail_ssl_tls: bool = False
    mail_timeout_seconds: int = Field(10, ge=1)

    # Model and inference
    model_source: str | None = None
    model_s3_key: str | None = None
    model_cache_dir: Path = Path("./var/model-cache")
    inference_backend: Literal["auto", "onnx", "torch"] = "auto"
    # cuda: ONNX Runtime's CUDA provider (onnxruntime-gpu) or torch on CUDA; auto: CUDA
    # when one of them can use it, else the CPU.
    inference_device: Literal["auto", "cpu", "cuda"] = "auto"
    # Images per model call (default: 8 on the CPU, 32 on a GPU).
    max_batch: int | None = Field(None, ge=1, le=256)
    batch_wait_ms: float = Field(5, ge=0, le=1000)
    fast_jpeg_decode: bool = True
    # The model's cores per process (default: the usable cores / WEB_WORKERS).
    inference_threads: int | None = Field(None, ge=1)
    inference_workers: int | None = Field(None, ge=1, le=64)  # batch threads (default: 2)
    # Model registry: every process re-reads the active version this often (seconds), and
    # an uploaded or s3:// weights file may be at most this large.
    model_poll_seconds: float = Field(2.0, ge=0.1, le=300)
    model_max_upload_mb: int = Field(500, ge=1, le=4096)
    # POST /admin/models {source: s3://...} reads only AWS_S3_BUCKET, only under this prefix.
    model_source_prefix: str = Field("models/", max_length=200, pattern=r"^([A-Za-z0-9._-]+/)*$")
    # uvicorn worker processes on this host; `ocupredict serve --workers N` sets it for its
    # workers, so that each sizes its inference threads to its share of the cores.
    web_workers: int = Field(1, ge=1, le=64)

    # The learning loop (`ocupredict train-worker`, README "Learning loop"). Recipes are the
    # *.yaml files of this directory (the allow-list); the worker trains at this nice level
    # with this many torch threads (CUDA when INFERENCE_DEVICE allows), writes progress and
    # its heartbeat every TRAINING_HEARTBEAT_SECONDS, looks for queued jobs every
    # TRAINING_POLL_SECONDS, and takes over a running job whose heartbeat is older than
    # TRAINING_STALE_SECONDS (its worker died), resuming from the job's last checkpoint.
    training_recipes_dir: Path = REPOSITORY_RECIPES_DIR
    training_threads: int = Field(1, ge=1, le=256)
    training_nice: int = Field(10, ge=0, le=19)
    training_poll_seconds: float = Field(5.0, gt=0, le=3600)
    training_heartbeat_seconds: float = Field(2.0, gt=0, le=600)
    training_stale_seconds: float = Field(120.0, gt=0, le=24 * 3600)

    # Uploads
    max_upload_mb: int = Field(15, ge=1, le=200)
    # A repeated Idempotency-Key on POST /predict returns the first prediction this long.
    idempotency_ttl_hours: int = Field(24, ge=1, le=24 * 30)
    # A repeat racing the first request waits at most this long for its result.
    idempotency_wait_seconds: float = Field(30.0, ge=0.1, le=600)
    # Every other request body (JSON, forms) may be at most this large.
    max_body_kb: int = Field(1024, ge=16, le=65536)
    max_image_pixels: int = Field(50_000_000, ge=64 * 64)

    # Image-quality gate (docs/quality-gate.md: what each threshold means, how it was set).
    # QUALITY_GATE=false turns it off for every model; a model's manifest may too.
    quality_gate: bool = True
    quality_fov_level: int = Field(QualityThresholds.fov_level, ge=0, le=254)
    quality_min_fov_fraction: float = Field(QualityThresholds.min_fov_fraction, ge=0, le=1)
    quality_max_corner_fov: float = Field(QualityThresholds.max_corner_fov, ge=0, le=1)
    quality_min_fov_diameter_px: int = Field(QualityThresholds.min_fov_diameter_px, ge=0)
    quality_min_focus: float = Field(QualityThresholds.min_focus, gt=0)
    quality_min_brightness: float = Field(QualityThresholds.min_brightness, ge=0, le=255)
    quality_max_brightness: float = Field(QualityThresholds.max_brightness, ge=0, le=255)
    quality_max_dark_fraction: float = Field(QualityThresholds.max_dark_fraction, gt=0, le=1)
    quality_max_clipped_fraction: float = Field(QualityThresholds.max_clipped_fraction, gt=0, le=1)
    # History: `total` is exact up to this many matching records; beyond it the count
    # stops there and the page says total_is_estimate (a lower bound).
    history_count_limit: int = Field(10_000, ge=1, le=10_000_000)

    # HTTP
    default_timezone: str = "America/Lima"
    cors_origins: Annotated[list[str], NoDecode] = []
    trusted_proxies: Annotated[list[str], NoDecode] = []

    # Operations. GET /metrics answers only these addresses (IPs or CIDRs; the socket peer,
    # or the client named by a trusted proxy); a Unix-socket peer counts as 127.0.0.1.
    metrics_allowed: Annotated[list[str], NoDecode] = ["127.0.0.1/32", "::1/128"]
    # This process's index 0..N-1 among the processes behind one proxy (serve-nginx sets it).
    process_index: int = Field(0, ge=0, le=63)
    # On SIGTERM: at most this long for in-flight requests and queued images to finish
    # (uvicorn's --timeout-graceful-shutdown, which otherwise waits forever).
    shutdown_timeout_seconds: float = Field(30, ge=1, le=600)
    # uvicorn's keep-alive; longer than the proxy's upstream keep-alive (no 502 races).
    keep_alive_seconds: int = Field(75, ge=1, le=3600)

    @field_validator("cors_origins", "trusted_proxies", "metrics_allowed", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies", "metrics_allowed")
    @classmethod
    def _networks(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for item in value:
            try:
                ip_network(item, strict=False)
            except ValueError as exc:
                name = (info.field_name or "").upper()
                raise ValueError(f"{name}: {item!r} is not an IP or CIDR") from exc
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # The same list the history and dashboard parameters accept: a name ZoneInfo can
        # open but the API refuses (posix/..., right/...) would fail every request later.
        if value not in known_time_zones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @cached_property
    def quality_thresholds(self) -> QualityThresholds:
        return QualityThresholds(
            fov_level=self.quality_fov_level,
            min_fov_fraction=self.quality_min_fov_fraction,
            max_corner_fov=self.quality_max_corner_fov,
            min_fov_diameter_px=self.quality_min_fov_diameter_px,
            min_focus=self.quality_min_focus,
            min_brightness=self.quality_min_brightness,
            max_brightness=self.quality_max_brightness,
            max_dark_fraction=self.quality_max_dark_fraction,
            max_clipped_fraction=self.quality_max_clipped_fraction,
        )

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json" or (self.log_format == "auto" and self.is_production)

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @cached_property
    def resolved_model_source(self) -> str | None:
        """MODEL_SOURCE wins; MODEL_S3_KEY alone means s3://AWS_S3_BUCKET/MODEL_S3_KEY."""
        if self.model_source:
            return self.model_source
        if self.model_s3_key:
            if not self.aws_s3_bucket:
                raise ConfigError("MODEL_S3_KEY is set but AWS_S3_BUCKET is empty")
            return f"s3://{self.aws_s3_bucket}/{self.model_s3_key.lstrip('/')}"
        return None

    def check_production(self) -> None:
        """Refuse to start in production with development-only defaults."""
        if not self.is_production:
            return
        problems: list[str] = []
        secret = self.jwt_secret_key.get_secret_value()
        if secret == DEV_JWT_SECRET or len(secret) < 32:
            problems.append("JWT_SECRET_KEY must be set to a random value of 32+ characters")
        if self.resolved_model_source is None:
            problems.append("MODEL_SOURCE (or MODEL_S3_KEY) must name real model weights")
        if self.mail_backend == "console":
            problems.append("MAIL_BACKEND must be smtp (console mail is for development)")
        if self.password_hash_memory_kib < 19456 or self.password_hash_time_cost < 2:
            problems.append("PASSWORD_HASH_* below OWASP's Argon2id minimum (19456 KiB, t=2)")
        if self.storage_backend == "s3" and not self.aws_s3_bucket:
            problems.append("AWS_S3_BUCKET must be set when STORAGE_BACKEND=s3")
        if problems:
            raise ConfigError("refusing to start in production: " + "; ".join(problems))
