"""FastAPI's own parameter and response tools in route functions: Header(), Cookie(), Form(),
Query(), Path(), Body(), a returned Response, and bytes of any declared media type."""

import pytest
from fastapi.testclient import TestClient

import nb2api
from nb2api.errors import SignatureError
from nb2api.load import load_notebook
from nb2api.routes import build_routes

IMPORTS = (
    "#| setup\nfrom typing import Annotated\n"
    "from fastapi import Body, Cookie, Form, Header, HTTPException, Path, Query, Response"
)

# In the style of Jupyter Kernel Gateway's api_intro example: a contact list over HTTP.
CONTACTS = '''#| setup
import hashlib
import json

from pydantic import BaseModel

contacts = {}

class Contact(BaseModel):
    name: str
    phone: str = ""

def etag_of(contact):
    return '"' + hashlib.sha1(json.dumps(contact, sort_keys=True).encode()).hexdigest() + '"'
'''

CONTACT_ROUTES = '''#| api
#| route: GET /contacts
def list_contacts(
    accept: Annotated[str, Header()] = "application/json",
    prefix: Annotated[str, Query(alias="name-prefix")] = "",
):
    """Every contact, as JSON or, when asked for, CSV."""
    rows = [{"id": key, **c} for key, c in contacts.items() if c["name"].startswith(prefix)]
    if "text/csv" in accept:
        lines = [f"{r['id']},{r['name']},{r['phone']}" for r in rows]
        return Response("id,name,phone\\n" + "\\n".join(lines) + "\\n", media_type="text/csv")
    return rows

#| route: POST /contacts
def create_contact(name: Annotated[str, Form()], phone: Annotated[str, Form()] = "") -> Response:
    key = max(contacts, default=0) + 1
    contacts[key] = {"name": name, "phone": phone}
    return Response(status_code=201, headers={"Location": f"/contacts/{key}"})

#| route: GET /contacts/{contact_id}
def get_contact(contact_id: int, if_none_match: Annotated[str | None, Header()] = None):
    if contact_id not in contacts:
        raise HTTPException(404, "no such contact")
    etag = etag_of(contacts[contact_id])
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(json.dumps(contacts[contact_id]), media_type="application/json",
                    headers={"ETag": etag})

#| route: PUT /contacts/{contact_id}
def update_contact(contact_id: int, contact: Contact) -> Contact:
    contacts[contact_id] = contact.model_dump()
    return contact

#| route: DELETE /contacts/{contact_id}
def delete_contact(contact_id: int) -> Response:
    contacts.pop(contact_id, None)
    return Response(status_code=204)
'''


@pytest.fixture
def app(make_notebook):
    def make(*cells: str) -> TestClient:
        return TestClient(nb2api.create_app(make_notebook(*cells)))
    return make


def test_a_kernel_gateway_style_crud_notebook(app):
    client = app(IMPORTS, CONTACTS, CONTACT_ROUTES)
    created = client.post("/contacts", data={"name": "Ada", "phone": "555"})
    assert (created.status_code, created.headers["location"]) == (201, "/contacts/1")
    assert created.content == b""
    client.post("/contacts", data={"name": "Alan"})
    assert client.post("/contacts", data={"phone": "1"}).status_code == 422  # name is required

    first = client.get("/contacts/1")
    assert (first.status_code, first.json()) == (200, {"name": "Ada", "phone": "555"})
    etag = first.headers["etag"]
    unchanged = client.get("/contacts/1", headers={"If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert client.get("/contacts/1", headers={"If-None-Match": '"old"'}).status_code == 200
    assert client.get("/contacts/9").status_code == 404

    assert client.get("/contacts", params={"name-prefix": "Al"}).json() == [
        {"id": 2, "name": "Alan", "phone": ""}]
    csv = client.get("/contacts", headers={"Accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text == "id,name,phone\n1,Ada,555\n2,Alan,\n"

    assert client.put("/contacts/2", json={"contact": {"name": "Alan T"}}).json() == {
        "name": "Alan T", "phone": ""}
    deleted = client.delete("/contacts/1")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert [c["id"] for c in client.get("/contacts").json()] == [2]


def test_markers_decide_the_source_and_reach_openapi(app):
    client = app(IMPORTS, '''#| api
#| route: GET /items/{key}
def get_item(
    key: Annotated[str, Path(min_length=2)],
    user_agent: Annotated[str, Header()],
    session: Annotated[str | None, Cookie()] = None,
    limit: Annotated[int, Query(ge=1)] = 10,
    x_raw: Annotated[str, Header(alias="X-Raw", convert_underscores=False)] = "",
    plain: int = 0,
):
    """One item.

    Args:
        user_agent: Who asks.
    """
    return {"key": key, "agent": user_agent, "session": session, "limit": limit, "raw": x_raw,
            "plain": plain}

def weigh(grams: Annotated[int, Body(ge=0)]) -> int:
    return grams
''')
    client.cookies.set("session", "s1")
    response = client.get("/items/ab?limit=3&plain=1", headers={"User-Agent": "me", "X-Raw": "r"})
    assert response.json() == {"key": "ab", "agent": "me", "session": "s1", "limit": 3,
                               "raw": "r", "plain": 1}
    assert client.get("/items/ab?limit=0").status_code == 422
    assert client.get("/items/a").status_code == 422
    assert client.post("/weigh", json={"grams": -1}).status_code == 422
    assert client.post("/weigh", json={"grams": 5}).json() == 5
    spec = client.get("/openapi.json").json()
    where = {p["name"]: p["in"] for p in spec["paths"]["/items/{key}"]["get"]["parameters"]}
    assert where == {"key": "path", "user-agent": "header", "session": "cookie",
                     "limit": "query", "X-Raw": "header", "plain": "query"}
    agent = next(p for p in spec["paths"]["/items/{key}"]["get"]["parameters"]
                 if p["name"] == "user-agent")
    assert "Who asks." in str(agent)


def test_form_fields_make_a_form_body(app):
    client = app(IMPORTS, '''#| api
def login(user: Annotated[str, Form()], remember: bool = False) -> dict:
    return {"user": user, "remember": remember}
''')
    response = client.post("/login", data={"user": "ada", "remember": "true"})
    assert response.json() == {"user": "ada", "remember": True}
    body = client.get("/openapi.json").json()["paths"]["/login"]["post"]["requestBody"]
    assert list(body["content"]) == ["application/x-www-form-urlencoded"]


def test_a_path_marker_needs_the_name_in_the_path(make_notebook):
    notebook = make_notebook(IMPORTS, '''#| api
#| route: GET /items
def items(key: Annotated[str, Path()]) -> str:
    return key
''')
    with pytest.raises(SignatureError) as info:
        build_routes(load_notebook(notebook))
    assert (info.value.function, info.value.parameter) == ("items", "key")


def test_a_returned_response_passes_through_unchanged(app):
    client = app(IMPORTS, '''#| setup
from fastapi.responses import HTMLResponse
''', '''#| api
def teapot():
    return Response("short and stout", status_code=418, media_type="text/plain",
                    headers={"X-Kind": "teapot"})

def page() -> HTMLResponse:
    return HTMLResponse("<h1>hi</h1>")
''')
    teapot = client.post("/teapot")
    assert (teapot.status_code, teapot.text, teapot.headers["x-kind"]) == (
        418, "short and stout", "teapot")
    page = client.post("/page")
    assert (page.status_code, page.headers["content-type"], page.text) == (
        200, "text/html; charset=utf-8", "<h1>hi</h1>")


@pytest.mark.parametrize(("path", "media_type", "content"), [
    ("/csv", "text/csv; charset=utf-8", b"a,b\n1,2\n"),
    ("/text_csv", "text/csv; charset=utf-8", b"a,b\n"),
    ("/pdf", "application/pdf", b"%PDF-1.4"),
])
def test_bytes_of_any_declared_media_type(app, path, media_type, content):
    client = app(IMPORTS, '''#| api
def csv() -> Annotated[bytes, "text/csv"]:
    return b"a,b\\n1,2\\n"

def text_csv() -> Annotated[bytes, "text/csv"]:
    return "a,b\\n"

def pdf() -> Annotated[bytes, "application/pdf"]:
    return b"%PDF-1.4"
''')
    response = client.post(path)
    assert response.status_code == 200
    assert (response.headers["content-type"], response.content) == (media_type, content)
    documented = client.get("/openapi.json").json()["paths"][path]["post"]["responses"]["200"]
    assert list(documented["content"]) == [media_type.split(";")[0]]
