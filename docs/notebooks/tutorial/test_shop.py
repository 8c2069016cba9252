from pathlib import Path

from fastapi.testclient import TestClient

import nb2api

app = nb2api.create_app(Path(__file__).parent / "shop.ipynb")


def test_a_quote_is_priced():
    with TestClient(app) as client:
        response = client.post("/quote", json={"order": {"item": "pear", "qty": 4}})
    assert response.status_code == 200
    assert response.json() == {"item": "pear", "total": 3.0}


def test_an_unknown_item_is_a_404():
    with TestClient(app) as client:
        response = client.get("/prices/kiwi")
    assert response.status_code == 404
    assert response.json() == {"detail": "no price for 'kiwi'"}
