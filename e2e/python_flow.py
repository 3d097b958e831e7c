"""The doctor flow through a Python client generated from the live /openapi.json.

e2e/run.py downloads the running server's /openapi.json, has openapi-python-client
(a generator independent of the TypeScript client's hey-api) generate the package
`ocupredict_client` from it into the run's temporary directory, and runs this script with
that directory on PYTHONPATH. Register -> verify with the emailed code -> log in -> upload
a JPEG and a PNG -> list -> detail -> image (bearer and signed URL) -> feedback -> stats
-> refresh -> log out. Every response must have the promised status and be parsed into
its generated model (errors too: their `code` is the generated enum of that operation's
codes); anything else exits 1.

Environment: OCUPREDICT_URL, OCUPREDICT_MAIL_DIR, OCUPREDICT_E2E_JPEG, OCUPREDICT_E2E_PNG.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import httpx
from ocupredict_client import AuthenticatedClient, Client
from ocupredict_client.api.auth import (
    auth_login,
    auth_logout,
    auth_read_me,
    auth_refresh,
    auth_register,
    auth_verify,
)
from ocupredict_client.api.health import health_ready
from ocupredict_client.api.history import (
    history_image,
    history_list,
    history_read,
    history_set_feedback,
)
from ocupredict_client.api.home import home_stats
from ocupredict_client.api.predict import predict_create
from ocupredict_client.models import (
    BodyAuthLogin,
    BodyPredictCreate,
    BodyPredictCreateEye,
    ErrorInvalidCredentials,
    ErrorInvalidToken,
    ErrorNotAuthenticated,
    ErrorUnsupportedDicomOrUnsupportedMediaType,
    FeedbackIn,
    FeedbackInVerdict,
    HistoryListOrderType0,
    HistoryListSort,
    HomeStatsRange,
    Prediction,
    PredictionPage,
    Ready,
    RefreshRequest,
    RegisterRequest,
    Stats,
    TokenPair,
    User,
    VerifyRequest,
)
from ocupredict_client.types import File, Response

BASE_URL = os.environ["OCUPREDICT_URL"].rstrip("/")
MAIL_DIR = Path(os.environ["OCUPREDICT_MAIL_DIR"])
T = TypeVar("T")


class FlowFailed(Exception):
    pass


def expect(label: str, response: Response[Any], status: int, model: type[T]) -> T:
    """The response has `status` and its body was parsed into the generated `model`."""
    if response.status_code != status:
        raise FlowFailed(
            f"{label}: answered {response.status_code}, expected {status}: "
            f"{response.content[:300]!r}"
        )
    if not isinstance(response.parsed, model):
        raise FlowFailed(
            f"{label}: parsed as {type(response.parsed).__name__}, expected {model.__name__}"
        )
    print(f"  ok  {label} -> {status} {model.__name__}", flush=True)
    return response.parsed


def check(condition: object, message: str) -> None:
    if not condition:
        raise FlowFailed(f"check failed: {message}")


def emailed_code(email: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(MAIL_DIR.glob("*.json")):
            mail = json.loads(path.read_text(encoding="utf-8"))
            if email in mail["to"]:
                codes = set(re.findall(r"(?<!\d)\d{6}(?!\d)", mail["text"]))
                check(len(codes) == 1, f"one code in the mail to {email}: {codes}")
                print(f"  ok  code emailed to {email}", flush=True)
                return codes.pop()
        time.sleep(0.1)
    raise FlowFailed(f"no mail for {email} in {MAIL_DIR}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(client: AuthenticatedClient, path: Path, content_type: str, **form: Any) -> Prediction:
    data = path.read_bytes()
    body = BodyPredictCreate(
        file=File(payload=data, file_name=path.name, mime_type=content_type), **form
    )
    prediction = expect(
        f"predict.create ({content_type})",
        predict_create.sync_detailed(client=client, body=body),
        201,
        Prediction,
    )
    check(prediction.image.content_type.value == content_type, f"stored as {content_type}")
    check(prediction.image.sha256 == sha256(data), "sha256 of the upload")
    check(prediction.image.filename == path.name, f"filename {prediction.image.filename}")
    total = sum(p.probability for p in prediction.probabilities)
    check(abs(total - 1) < 1e-3, f"probabilities sum to {total}")
    return prediction


def flow() -> None:
    jpeg = Path(os.environ["OCUPREDICT_E2E_JPEG"])
    png = Path(os.environ["OCUPREDICT_E2E_PNG"])
    email = f"pyflow-{uuid.uuid4().hex[:10]}@example.com"
    password = "py-Password-0123"
    anonymous = Client(base_url=BASE_URL, raise_on_unexpected_status=False)

    print("health", flush=True)
    ready = expect("health.ready", health_ready.sync_detailed(client=anonymous), 200, Ready)
    check(ready.status.value == "ready", f"ready status {ready.status}")

    print("register, verify, log in", flush=True)
    register = RegisterRequest(email=email, password=password, name="Dr. Python", locale="en")
    user = expect(
        "auth.register", auth_register.sync_detailed(client=anonymous, body=register), 201, User
    )
    check(user.email == email and not user.is_verified, f"registered {user}")
    verify = VerifyRequest(email=email, code=emailed_code(email))
    expect("auth.verify", auth_verify.sync_detailed(client=anonymous, body=verify), 200, TokenPair)
    wrong = auth_login.sync_detailed(
        client=anonymous, body=BodyAuthLogin(username=email, password="not-the-password")
    )
    refused = expect("auth.login (wrong password)", wrong, 401, ErrorInvalidCredentials)
    check(refused.code.value == "INVALID_CREDENTIALS", f"code {refused.code}")
    login = expect(
        "auth.login",
        auth_login.sync_detailed(
            client=anonymous, body=BodyAuthLogin(username=email, password=password)
        ),
        200,
        TokenPair,
    )
    check(login.token_type == "bearer" and login.expires_in > 0, "a bearer token pair")
    client = AuthenticatedClient(base_url=BASE_URL, token=login.access_token)
    me = expect("auth.readMe", auth_read_me.sync_detailed(client=client), 200, User)
    check(me.email == email and me.is_verified, f"me {me}")

    print("predict", flush=True)
    first = upload(client, jpeg, "image/jpeg", patient_ref="PY-0001", eye=BodyPredictCreateEye.LEFT)
    check(first.patient_ref == "PY-0001" and first.eye.value == "left", "form fields")
    check(first.model.demo and first.feedback is None, "demo weights, no feedback yet")
    second = upload(client, png, "image/png")
    not_image = BodyPredictCreate(
        file=File(payload=b"plain text", file_name="note.jpg", mime_type="image/jpeg")
    )
    expect(
        "predict.create (not an image)",
        predict_create.sync_detailed(client=client, body=not_image),
        415,
        ErrorUnsupportedDicomOrUnsupportedMediaType,
    )

    print("history", flush=True)
    page = expect(
        "history.list",
        history_list.sync_detailed(
            client=client,
            page=1,
            page_size=10,
            sort=HistoryListSort.CREATED_AT,
            order=HistoryListOrderType0.ASC,
        ),
        200,
        PredictionPage,
    )
    check(page.total == 2 and [i.id for i in page.items] == [first.id, second.id], f"{page}")
    detail = expect(
        "history.read", history_read.sync_detailed(first.id, client=client), 200, Prediction
    )
    check(detail.id == first.id and detail.image_url, "detail with image_url")

    print("image", flush=True)
    image = history_image.sync_detailed(first.id, client=client)
    check(image.status_code == 200, f"history.image answered {image.status_code}")
    check(sha256(image.content) == sha256(jpeg.read_bytes()), "history.image bytes")
    print("  ok  history.image (bearer) -> 200, same bytes", flush=True)
    signed = httpx.get(detail.image_url, timeout=30)  # as an <img>: no Authorization header
    check(signed.status_code == 200 and signed.content == jpeg.read_bytes(), "image_url bytes")
    print("  ok  GET image_url (no Authorization header) -> 200, same bytes", flush=True)

    print("feedback", flush=True)
    other = next(
        p.class_code for p in first.probabilities if p.class_code != first.result.class_code
    )
    feedback = FeedbackIn(verdict=FeedbackInVerdict.INCORRECT, correct_class=other, comment="py")
    updated = expect(
        "history.setFeedback",
        history_set_feedback.sync_detailed(first.id, client=client, body=feedback),
        200,
        Prediction,
    )
    check(updated.feedback and updated.feedback.correct_class == other, f"{updated.feedback}")

    print("stats", flush=True)
    stats = expect(
        "home.stats",
        home_stats.sync_detailed(client=client, range_=HomeStatsRange.WEEK, tz="UTC"),
        200,
        Stats,
    )
    check(stats.mine.total == 2 and stats.mine.with_feedback == 1, f"mine {stats.mine}")
    check(stats.mine.correct == 0 and stats.mine.correct_pct == 0, "the one verdict is incorrect")

    print("refresh, log out", flush=True)
    refreshed = expect(
        "auth.refresh",
        auth_refresh.sync_detailed(
            client=anonymous, body=RefreshRequest(refresh_token=login.refresh_token)
        ),
        200,
        TokenPair,
    )
    check(refreshed.refresh_token != login.refresh_token, "a new refresh token")
    client = AuthenticatedClient(base_url=BASE_URL, token=refreshed.access_token)
    expect("auth.readMe (new access token)", auth_read_me.sync_detailed(client=client), 200, User)
    logout = auth_logout.sync_detailed(
        client=anonymous, body=RefreshRequest(refresh_token=refreshed.refresh_token)
    )
    check(logout.status_code == 204, f"auth.logout answered {logout.status_code}")
    print("  ok  auth.logout -> 204", flush=True)
    expect(
        "auth.refresh (logged-out token)",
        auth_refresh.sync_detailed(
            client=anonymous, body=RefreshRequest(refresh_token=refreshed.refresh_token)
        ),
        401,
        ErrorInvalidToken,
    )
    expect(
        "auth.readMe (ended session)",
        auth_read_me.sync_detailed(client=client),
        401,
        ErrorNotAuthenticated,
    )


def main() -> int:
    started = time.monotonic()
    try:
        flow()
    except FlowFailed as exc:
        print(f"python client flow: FAILED: {exc}", flush=True)
        return 1
    print(f"python client flow: passed in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
