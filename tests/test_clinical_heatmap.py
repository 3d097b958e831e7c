"""Grad-CAM heatmaps: the map points where the class's evidence is, the route caches it
beside the image, and it is owner-only like every id route."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from app.inference.explain import MAX_SIDE, Explainer
from app.inference.manifest import ModelManifest
from app.storage import heatmap_key
from tests.support.factories import add_prediction, app_of, make_doctor
from tests.support.fundus import encoded, fundus
from tests.support.predict import predict

SIDE = 64
QUADRANTS = {  # class code -> (rows, cols) of the input it looks at
    "top_left": (slice(0, SIDE // 2), slice(0, SIDE // 2)),
    "bottom_right": (slice(SIDE // 2, SIDE), slice(SIDE // 2, SIDE)),
}


class Masked(nn.Module):
    """A convolution whose output is kept only inside one quadrant per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        nn.init.constant_(self.conv.weight, 0.1)
        nn.init.zeros_(self.conv.bias)
        mask = torch.zeros(2, SIDE // 4, SIDE // 4)
        for channel, (rows, cols) in enumerate(QUADRANTS.values()):
            mask[channel, rows.start // 4 : rows.stop // 4, cols.start // 4 : cols.stop // 4] = 1
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        features: Tensor = torch.relu(self.conv(nn.functional.avg_pool2d(x, 4)))
        return features * self.mask


class QuadrantNet(nn.Module):
    """Class c's logit is the mean of channel c: it depends on c's quadrant only."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = Masked()

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x).mean(dim=(2, 3))


MANIFEST = ModelManifest(
    classes=[{"code": code, "es": code, "en": code} for code in QUADRANTS], input_size=SIDE
)


def explainer() -> Explainer:
    network = QuadrantNet()
    return Explainer(network, network.layer, MANIFEST)


def photo(width: int = 300, height: int = 200) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(100, 255, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("index", [0, 1])
def test_the_heatmap_peaks_in_the_quadrant_the_class_depends_on(index: int) -> None:
    cam = explainer().attribution(photo(), index)
    rows, cols = list(QUADRANTS.values())[index]
    peak = np.unravel_index(int(cam.argmax()), cam.shape)
    assert rows.start // 4 <= peak[0] < rows.stop // 4
    assert cols.start // 4 <= peak[1] < cols.stop // 4
    outside = cam.copy()
    outside[rows.start // 4 : rows.stop // 4, cols.start // 4 : cols.stop // 4] = 0
    assert outside.max() == 0


def test_the_rendered_png_keeps_the_aspect_and_is_hot_in_the_quadrant() -> None:
    image = photo(300, 200)
    png = explainer().render(image, 1)  # bottom right
    out = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32)
    assert out.shape == (200, 300, 3)
    changed = np.abs(out - np.asarray(image, np.float32)).sum(axis=2)
    assert changed[150:, 225:].mean() > 10 * max(changed[:50, :75].mean(), 0.1)


def test_the_classifiers_network_is_left_alone() -> None:
    from app.inference.manifest import DEFAULT_MANIFEST
    from app.inference.network import load_network, seeded_state_dict

    network = load_network(seeded_state_dict(4, 3), 4)
    explained = Explainer.for_classifier(network, DEFAULT_MANIFEST)
    explained.attribution(photo(224, 224), 0)
    assert all(p.requires_grad for p in network.parameters())  # not frozen by us
    assert not network.base.layer4[-1]._forward_hooks  # captum hooked only its copy


# --------------------------------------------------------------------------- the route


async def test_heatmap_route_caches_and_is_owner_only(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor, other = await make_doctor(app), await make_doctor(app)
    body = await predict(client, doctor.headers, encoded(fundus(800)))
    url = f"/api/v1/history/{body['id']}/heatmap"
    explained = app.state.models.current.explainer
    before = explained.computed

    first = await client.get(url, headers=doctor.headers)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(first.content))
    assert max(image.size) <= MAX_SIDE and image.size == (512, 512)
    assert explained.computed == before + 1

    again = await client.get(url, headers=doctor.headers)
    assert again.status_code == 200 and again.content == first.content
    assert explained.computed == before + 1  # served from the cache
    named = await client.get(
        url, headers=doctor.headers, params={"class_code": body["result"]["class_code"]}
    )
    assert named.content == first.content and explained.computed == before + 1

    other_class = next(
        p["class_code"]
        for p in body["probabilities"]
        if p["class_code"] != body["result"]["class_code"]
    )
    second = await client.get(url, headers=doctor.headers, params={"class_code": other_class})
    assert second.status_code == 200 and second.content != first.content
    assert explained.computed == before + 2

    # The cache sits beside the image in the store.
    row_key = await _image_key(app, body["id"])
    tag = f"{body['model']['version']}|{body['result']['class_code']}"
    assert (await app.state.storage.get(heatmap_key(row_key, tag))).data == first.content

    assert (await client.get(url, headers=other.headers)).status_code == 404
    assert (await client.get(url)).status_code == 401
    for bad in ("keratitis", "Not-A-Code"):
        response = await client.get(url, headers=doctor.headers, params={"class_code": bad})
        assert response.status_code == 422
    bad_code = await client.get(url, headers=doctor.headers, params={"class_code": "keratitis"})
    assert bad_code.json()["code"] == "INVALID_CLASS_CODE"
    assert explained.computed == before + 2

    # Deleting the prediction removes its heatmaps with its image.
    assert (
        await client.delete(f"/api/v1/history/{body['id']}", headers=doctor.headers)
    ).status_code == 204
    assert not await app.state.storage.exists(heatmap_key(row_key, tag))


async def test_another_model_versions_prediction_is_409(client: httpx.AsyncClient) -> None:
    app = app_of(client)
    doctor = await make_doctor(app)
    row = await add_prediction(app, doctor.id)  # made by model 0123456789ab
    assert app.state.models.current.version != row.model_version
    response = await client.get(f"/api/v1/history/{row.id}/heatmap", headers=doctor.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "MODEL_VERSION_GONE"


async def _image_key(app: Any, prediction_id: int) -> str:
    from app.db.models import Prediction

    async with app.state.sessionmaker() as session:
        row = await session.get(Prediction, prediction_id)
        assert row is not None
        return row.image_key


def test_heatmap_keys_sit_beside_their_image() -> None:
    from app.storage import InvalidImageKey, content_type_for_key, source_image_key
    from app.storage.base import validate_key

    image = "images/2026/12/" + "ab" * 16 + ".jpg"
    key = heatmap_key(image, "0123456789ab|glaucoma")
    assert key.startswith(image + ".heatmap-") and validate_key(key) == key
    assert content_type_for_key(key) == "image/png"
    assert source_image_key(key) == image and source_image_key(image) == image
    assert heatmap_key(image, "v|a") != heatmap_key(image, "v|b")
    with pytest.raises(InvalidImageKey):
        heatmap_key(key, "x")  # no heatmap of a heatmap
    with pytest.raises(InvalidImageKey):
        validate_key(image + ".heatmap-../../x.png")
