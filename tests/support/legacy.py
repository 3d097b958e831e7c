"""A generated legacy (Flask) database and bucket, and what importing them must give.

`generate()` makes the rows and images; `create_source()` creates the legacy tables from
the DDL in tests/legacy/ (MySQL or SQLite flavour, as Flask-SQLAlchemy's create_all made
them) and inserts the rows with plain SQL; `put_objects()` fills the legacy bucket.
`Expected` is worked out by the generator from what it injected, row by row, without
the importer's code: it is the oracle the import report and database are checked against.

Passwords are hashed by werkzeug itself: two accounts with werkzeug's real default costs
(pbkdf2:sha256:260000, what the legacy Werkzeug 2.2 wrote, and scrypt 32768:8:1), the rest
with cheap explicit parameters (pbkdf2:sha256:1000 and scrypt:1024:8:1) so 200 hashes take
well under a second; one account has a pre-2.3 plain `sha256$` hash no current werkzeug
checks (imported without a usable password).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from werkzeug.security import generate_password_hash

from tests.support.dicom import encapsulated_dicom, flat_jpeg

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "legacy"  # tests/legacy/
LABELS = {  # the legacy id2label names -> this service's class codes
    "Glaucoma": "glaucoma",
    "Retinopatia diabetica": "diabetic_retinopathy",
    "Normal": "normal",
    "Catarata": "cataract",
}
ORDER = list(LABELS)  # legacy model output order

TAKEN_USER = 9  # its email already has an account in the service: EMAIL_TAKEN
DUPLICATE_USER, DUPLICATE_OF = 200, 7  # same email as user 7 but for case, created later
PLAIN_HASH_USER = 3  # 'sha256$salt$hex' (Werkzeug < 2.3 'plain' method): no usable hash

# id -> (probabilities text, class name) for rows the import must refuse, and why.
MALFORMED = {
    11: ("[0.2, 0.3", "Normal"),
    12: ("tensor([0.1, 0.2, 0.3, 0.4])", "Catarata"),
    13: ("[0.5, 0.5, 0.5, 0.5]", "Glaucoma"),
    14: ("[nan, 0.1, 0.2, 0.7]", "Catarata"),
    15: ("[0.25, 0.25, 0.5]", "Normal"),
    16: ("__import__('os').system('touch /tmp/ocupredict-pwned')", "Normal"),
    17: ("[0.7, 0.1, 0.1, 0.1]", "Catarata"),  # the named class is not the top one
}
UNKNOWN_CLASS = {21: "Queratocono", 22: ""}
MISSING_OBJECT, NULL_KEY = 31, 32
# truncated JPEG, garbage after a JPEG magic, a GIF, a 32x32 PNG, and a 3 MB DICOM whose
# header says 64 x 64 while its JPEG frame is 13000 x 13000 (refused before decoding)
CORRUPT = (41, 42, 43, 44, 45)
LYING_DICOM = encapsulated_dicom([flat_jpeg(13_000, 13_000)], rows=64, columns=64)
NOTE = "revisar con especialista"


@dataclass(frozen=True)
class ExpectedRow:
    owner: int  # legacy user id of the account the row belongs to after the import
    class_code: str
    probabilities: list[float]
    verdict: str | None
    comment: str | None
    content_type: str
    width: int
    height: int
    sha256: str
    filename: str
    created_at: datetime  # naive UTC, as the legacy row


@dataclass
class Expected:
    user_outcome: dict[int, str] = field(default_factory=dict)  # "imported" or a reason
    history_outcome: dict[int, str] = field(default_factory=dict)
    rows: dict[int, ExpectedRow] = field(default_factory=dict)  # the good history rows
    passwords: dict[int, str] = field(default_factory=dict)
    hash_method: dict[int, str] = field(default_factory=dict)
    emails: dict[int, str] = field(default_factory=dict)  # normalised (lower case)
    unusable_passwords: int = 0

    def count(self, outcomes: dict[int, str], what: str) -> int:
        return sum(1 for outcome in outcomes.values() if outcome == what)

    def failed(self, outcomes: dict[int, str]) -> dict[int, str]:
        return {i: o for i, o in outcomes.items() if o not in ("imported", "CASE_DUPLICATE")}


@dataclass
class LegacyData:
    users: list[dict[str, Any]]
    history: list[dict[str, Any]]
    objects: dict[str, bytes]  # key in the legacy bucket -> bytes
    expected: Expected


def _image(row_id: int, fmt: str, width: int, height: int) -> bytes:
    """A small image whose pixels encode the row id (every row's bytes are distinct)."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[:, :, 2] = (row_id * 37) % 256
    bits = [(row_id >> k) & 1 for k in range(16)]
    for k, bit in enumerate(bits):
        pixels[4 * k : 4 * k + 4, :8, 1] = 255 * bit
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _probabilities(rng: random.Random, top: int) -> list[float]:
    logits = [rng.gauss(0, 1) for _ in ORDER]
    logits[top] = max(logits) + 0.5 + rng.random() * 3
    exps = [math.exp(v) for v in logits]
    total = sum(exps)
    return [v / total for v in exps]  # Python floats, as .tolist() gave the legacy app


def _plain_sha256_hash(password: str, salt: str) -> str:
    """What Werkzeug 2.2's generate_password_hash(method='sha256') wrote."""
    digest = hmac.new(salt.encode(), password.encode(), "sha256").hexdigest()
    return f"sha256${salt}${digest}"


def generate(
    n_users: int = 200, n_rows: int = 5000, seed: int = 18, taken_user: int | None = TAKEN_USER
) -> LegacyData:
    """`taken_user`: the legacy user whose email the test gives an account in the service
    before importing (None: no such account)."""
    rng = random.Random(seed)
    expected = Expected()
    users: list[dict[str, Any]] = []
    start = datetime(2024, 1, 1, 8, 0, 0)
    for i in range(1, n_users + 1):
        email = f"doctor{i:03d}@clinica.example"
        if i == DUPLICATE_USER:
            email = f"Doctor{DUPLICATE_OF:03d}@Clinica.Example"
        password = f"legacy-pass-{i:03d}"
        method = {1: "pbkdf2:sha256:260000", 2: "scrypt"}.get(
            i, "pbkdf2:sha256:1000" if i % 2 else "scrypt:1024:8:1"
        )
        hashed = generate_password_hash(password, method)
        if i == PLAIN_HASH_USER:
            method, hashed = "sha256", _plain_sha256_hash(password, "Ab3dEf7hIj1kLm9n")
            expected.unusable_passwords += 1
        users.append(
            {
                "id": i,
                "email": email,
                "password": hashed,
                "name": None if i % 40 == 0 else f"Dra. Legado {i}",
                "is_verified": i % 25 != 0,
                "verification_code": "123456" if i % 25 == 0 else None,
                "verification_code_expiration": None,
                "created_at": start + timedelta(days=i, minutes=i),
            }
        )
        expected.passwords[i] = password
        expected.hash_method[i] = method
        expected.emails[i] = email.lower()
        expected.user_outcome[i] = (
            "EMAIL_TAKEN"
            if i == taken_user
            else "CASE_DUPLICATE"
            if i == DUPLICATE_USER
            else "imported"
        )

    history: list[dict[str, Any]] = []
    objects: dict[str, bytes] = {}
    first = datetime(2024, 6, 1, 12, 0, 0)
    for i in range(1, n_rows + 1):
        user_id = (i % n_users) + 1
        fmt = "PNG" if i % 7 == 0 else "JPEG"
        width, height = 64 + i % 33, 64 + (i * 7) % 29
        data = _image(i, fmt, width, height)
        filename = f"ojo_{i}.{'png' if fmt == 'PNG' else 'jpg'}"
        if i % 500 == 3:
            filename = f"../../etc/fondo ñ {i}.jpg"  # the legacy app kept whatever came
        top = rng.randrange(len(ORDER))
        name = ORDER[top]
        probabilities = _probabilities(rng, top)
        probabilities_text = str(probabilities)
        feedback = {1: "correcto", 2: "incorrecto", 3: "Correcto "}.get(i % 5)
        if i % 97 == 0:
            feedback = NOTE
        key: str | None = f"imagenes/{uuid.UUID(int=rng.getrandbits(128), version=4)}-{filename}"
        outcome = "imported"
        if i in MALFORMED:
            probabilities_text, name = MALFORMED[i]
            outcome = "MALFORMED_PROBABILITIES"
        elif i in UNKNOWN_CLASS:
            name = UNKNOWN_CLASS[i]
            outcome = "UNKNOWN_CLASS"
        elif i in (MISSING_OBJECT, NULL_KEY):
            outcome = "MISSING_IMAGE"
        elif i in CORRUPT:
            data = {
                41: data[: len(data) // 3],
                42: b"\xff\xd8\xff\xe0" + bytes(rng.getrandbits(8) for _ in range(2000)),
                43: b"GIF89a" + bytes(200),
                44: _image(i, "PNG", 32, 32),
                45: LYING_DICOM,
            }[i]
            outcome = "UNDECODABLE_IMAGE"
        if user_id == taken_user:
            outcome = "OWNER_NOT_IMPORTED"
        if i == NULL_KEY:
            key = None
        elif i != MISSING_OBJECT:
            assert key is not None
            objects[key] = data
        created_at = first + timedelta(minutes=17 * i, seconds=i % 60)
        history.append(
            {
                "id": i,
                "user_id": user_id,
                "image_filename": filename,
                "image_s3_key": key,
                "predicted_class_name": name,
                "probabilities": probabilities_text,
                "doctor_feedback": feedback,
                "created_at": created_at,
            }
        )
        expected.history_outcome[i] = outcome
        if outcome == "imported":
            verdict = {"correcto": "correct", "incorrecto": "incorrect"}.get(
                (feedback or "").strip().lower()
            )
            expected.rows[i] = ExpectedRow(
                owner=DUPLICATE_OF if user_id == DUPLICATE_USER else user_id,
                class_code=LABELS[name],
                probabilities=probabilities,
                verdict=verdict,
                comment=NOTE if feedback == NOTE else None,
                content_type="image/png" if fmt == "PNG" else "image/jpeg",
                width=width,
                height=height,
                sha256=hashlib.sha256(data).hexdigest(),
                filename=filename.rsplit("/", 1)[-1],
                created_at=created_at,
            )
    return LegacyData(users, history, objects, expected)


# --------------------------------------------------------------------------- the source


def source_urls(test_database_url: str | None, tmp_dir: Path, label: str) -> tuple[str, str]:
    """(URL as the legacy app would name it, URL on the async driver to fill it).

    MariaDB (when the suite runs on it): database `flask_<label>_<test db>` on the same
    server; otherwise a SQLite file, the legacy app's own default.
    """
    if test_database_url:
        url = make_url(test_database_url)
        name = f"flask_{label}_{url.database}"
        server = url.set(drivername="mysql+pymysql", database=name)
        return (
            server.render_as_string(hide_password=False),
            server.set(drivername="mysql+aiomysql").render_as_string(hide_password=False),
        )
    path = tmp_dir / f"legacy-{label}.db"
    return f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"


def _ddl(dialect: str) -> list[str]:
    script = (SCHEMA_DIR / f"flask_schema.{dialect}.sql").read_text()
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


async def create_source(async_url: str, data: LegacyData) -> None:
    """Create the legacy tables (dropping an older copy) and insert the rows."""
    url = make_url(async_url)
    mysql = url.get_backend_name() == "mysql"
    if mysql:
        server = create_async_engine(url.set(database=""), isolation_level="AUTOCOMMIT")
        async with server.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{url.database}`"))
            # Binary collation: the legacy app on SQLite (or a _bin MySQL collation) let
            # emails that differ only in case coexist; a _ci collation would refuse them.
            await conn.execute(
                text(f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            )
        await server.dispose()
    else:
        Path(url.database or "").unlink(missing_ok=True)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in _ddl("mysql" if mysql else "sqlite"):
                await conn.execute(text(statement))
            for table, rows in (("users", data.users), ("prediction_history", data.history)):
                columns = list(rows[0])
                insert = text(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                )
                values = rows if mysql else [_sqlite_values(row) for row in rows]
                for start in range(0, len(values), 1000):
                    await conn.execute(insert, values[start : start + 1000])
    finally:
        await engine.dispose()


def _sqlite_values(row: dict[str, Any]) -> dict[str, Any]:
    """Datetimes as SQLAlchemy's SQLite dialect writes them (what the legacy app stored)."""
    return {
        k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
        for k, v in row.items()
    }


async def drop_source(async_url: str) -> None:
    url = make_url(async_url)
    if url.get_backend_name() != "mysql":
        return
    server = create_async_engine(url.set(database=""), isolation_level="AUTOCOMMIT")
    async with server.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS `{url.database}`"))
    await server.dispose()


def _moto_backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def put_objects(bucket: str, objects: dict[str, bytes]) -> None:
    """Store the legacy images in the moto server's bucket. Written straight into the
    in-process moto backend that serves the S3 endpoint (5,000 PUTs over HTTP would take
    most of the test's time); the import reads them back over HTTP like any S3 client.
    (The import never trusts an object's content type: the legacy app wrote image/jpeg
    for everything.)"""
    backend = _moto_backend()
    for key, data in objects.items():
        backend.put_object(bucket, key, data)


def delete_objects(bucket: str, objects: dict[str, bytes]) -> None:
    backend = _moto_backend()
    for key in objects:
        backend.delete_object(bucket, key)
