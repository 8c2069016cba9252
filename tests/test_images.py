"""Routes that answer with an image: a matplotlib Figure or PNG bytes."""

import pytest
from fastapi.testclient import TestClient

import nb2api

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def images(notebook):
    return TestClient(nb2api.create_app(notebook("types_images")))


@pytest.mark.parametrize("path", ["/plot", "/png"])
def test_image_routes_answer_png(images, path):
    response = images.post(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_MAGIC)


def test_image_route_is_documented_as_png(images):
    spec = images.get("/openapi.json").json()
    content = spec["paths"]["/plot"]["post"]["responses"]["200"]["content"]
    assert content == {"image/png": {"schema": {"type": "string", "format": "binary"}}}


def test_wrong_value_from_an_image_route_is_500(images):
    response = images.post("/not_an_image")
    assert response.status_code == 500
    assert "Figure" in response.json()["detail"]


def test_undeclared_figure_is_shown_as_png_as_in_jupyter(images):
    response = images.post("/undeclared")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_MAGIC)
