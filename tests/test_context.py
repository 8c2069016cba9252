from fastapi.testclient import TestClient

import nb2api
from nb2api.serve.context import request_headers


def test_request_headers_are_the_answered_requests(make_notebook):
    app = nb2api.create_app(make_notebook("#| api\ndef ping() -> str:\n    return 'pong'"))

    @app.get("/probe")
    async def probe() -> dict:
        return {"probe": request_headers().get("x-probe")}

    client = TestClient(app)
    assert client.get("/probe", headers={"X-Probe": "one"}).json() == {"probe": "one"}
    assert client.get("/probe").json() == {"probe": None}
    assert len(request_headers()) == 0  # outside a request
