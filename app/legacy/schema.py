"""The earlier back-end's two tables, as its Flask-SQLAlchemy models declared them.

`db.create_all()` made them (no migrations); see ../shared/LEGACY.md and
tests/legacy/ for the DDL that produces on MySQL and SQLite. Only read here, with
SQLAlchemy Core: the import never writes to the legacy database.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    make_url,
)
from sqlalchemy.exc import ArgumentError

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(120), nullable=False, unique=True),
    Column("password", String(200), nullable=False),  # werkzeug generate_password_hash
    Column("name", String(100), nullable=True),
    Column("is_verified", Boolean, default=False),
    Column("verification_code", String(50), nullable=True),
    Column("verification_code_expiration", DateTime, nullable=True),
    Column("created_at", DateTime),  # naive UTC (datetime.utcnow)
)

prediction_history = Table(
    "prediction_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("image_filename", String(200), nullable=False),
    Column("image_s3_key", String(300), nullable=True),  # imagenes/{uuid4}-{filename}
    Column("predicted_class_name", String(100), nullable=False),
    Column("probabilities", String(500), nullable=False),  # str(list of 4 floats)
    Column("doctor_feedback", String(50), nullable=True),  # "correcto" / "incorrecto" / text
    Column("created_at", DateTime),  # naive UTC
)

# The legacy app's URL (mysql+pymysql://, mysql://, sqlite:///) names a blocking driver;
# the import reads with the async driver of the same database.
_ASYNC_DRIVERS = {
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "sqlite": "sqlite+aiosqlite",
}


def async_source_url(url: str) -> str:
    """The SQLAlchemy URL of the legacy database, on an async driver (MySQL gets utf8mb4)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported legacy database {backend!r} (MySQL/MariaDB or SQLite)")
    parsed = parsed.set(drivername=_ASYNC_DRIVERS[backend])
    if backend != "sqlite" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed.render_as_string(hide_password=False)
