"""What the notebook shows, the API returns: tables with their index, any dict key, and values
that only Jupyter's display protocol knows how to show."""

import pytest
from fastapi.testclient import TestClient

import nb2api

SETUP = "#| setup\nfrom typing import Annotated\nimport numpy as np\nimport pandas as pd"
SALES = (
    "sales = pd.DataFrame({'region': ['n', 's', 'n'], 'price': [1.0, 2.0, 3.0],\n"
    "                      'day': pd.date_range('2024-01-01', periods=3, freq='D')})"
)


@pytest.fixture
def app(make_notebook):
    def make(*cells: str) -> TestClient:
        return TestClient(nb2api.create_app(make_notebook(*cells)))
    return make


def test_a_table_keeps_an_informative_index_as_leading_columns(app):
    client = app(SETUP + "\n" + SALES, """#| api
def described() -> pd.DataFrame:
    return sales[['price']].describe().loc[['count', 'mean']]

def resampled():
    return sales.set_index('day').resample('2D')[['price']].sum()

def grouped():
    return sales.groupby(['region', 'day'])[['price']].sum()

def filtered():
    return sales[sales.price > 1][['price']]

def plain():
    return sales[['price']]
""")
    assert client.post("/described").json() == [
        {"index": "count", "price": 3.0}, {"index": "mean", "price": 2.0}]
    assert client.post("/resampled").json() == [
        {"day": "2024-01-01T00:00:00", "price": 3.0}, {"day": "2024-01-03T00:00:00", "price": 3.0}]
    assert client.post("/grouped").json()[0] == {
        "region": "n", "day": "2024-01-01T00:00:00", "price": 1.0}
    assert client.post("/filtered").json() == [{"index": 1, "price": 2.0},
                                               {"index": 2, "price": 3.0}]
    assert client.post("/plain").json() == [{"price": 1.0}, {"price": 2.0}, {"price": 3.0}]


def test_multiindex_columns_are_joined_with_an_underscore(app):
    client = app(SETUP + "\n" + SALES, """#| api
def aggregated() -> pd.DataFrame:
    return sales.groupby('region').agg({'price': ['mean', 'max']})

def flat_again():
    return sales.groupby('region').agg({'price': ['mean', 'max']}).reset_index()
""")
    expected = [{"region": "n", "price_mean": 2.0, "price_max": 3.0},
                {"region": "s", "price_mean": 2.0, "price_max": 2.0}]
    assert client.post("/aggregated").json() == expected
    assert client.post("/flat_again").json() == expected


def test_a_declared_row_keeps_its_columns_and_may_take_them_from_the_index(app):
    client = app(SETUP + "\nfrom pydantic import BaseModel\n" + SALES + """
class Total(BaseModel):
    region: str
    price: float
""", """#| api
def totals() -> Annotated[pd.DataFrame, Total]:
    return sales.groupby('region')[['price']].sum()
""")
    assert client.post("/totals").json() == [{"region": "n", "price": 4.0},
                                             {"region": "s", "price": 2.0}]


def test_dict_keys_may_be_numpy_and_pandas_scalars(app):
    client = app(SETUP, """#| api
def keys():
    return {np.int64(3): 'int', np.float64(1.5): 'float', np.str_('s'): 'str',
            pd.Timestamp('2024-01-01'): 'time', 'nested': {np.int32(1): [{np.int8(2): 1}]}}

def counts() -> dict:
    return pd.Series(['a', 'b', 'a']).value_counts().to_dict()

def tuple_keys():
    return {(1, 2): 'pair'}
""")
    assert client.post("/keys").json() == {"3": "int", "1.5": "float", "s": "str",
                                           "2024-01-01T00:00:00": "time",
                                           "nested": {"1": [{"2": 1}]}}
    assert client.post("/counts").json() == {"a": 2, "b": 1}
    response = client.post("/tuple_keys")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "tuple" in detail and "must a type" not in detail


DISPLAYABLE = '''#| setup
class Summary:
    """Like statsmodels' Summary: HTML and LaTeX, and a text repr."""
    def _repr_html_(self):
        return "<table><tr><td>coef</td></tr></table>"
    def _repr_latex_(self):
        return "\\\\begin{tabular}"
    def __repr__(self):
        return "Summary: coef"

class Chart:
    """Like an altair chart: a Vega-Lite bundle."""
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"application/vnd.vegalite.v5+json": {"mark": "bar"}, "text/plain": "Chart"}

class Table:
    def _repr_json_(self):
        return {"rows": 2}, {"expanded": True}
    def _repr_html_(self):
        return "<b>2 rows</b>"

class Picture:
    def _repr_png_(self):
        return b"\\x89PNG-bytes"
    def _repr_html_(self):
        return None  # declines, as IPython lets a _repr_*_ method do

class Opaque:
    pass
'''


@pytest.fixture
def shown(app):
    return app(DISPLAYABLE, """#| api
def summary():
    return Summary()

def declared() -> Summary:
    return Summary()

def chart():
    return Chart()

def table():
    return Table()

def picture():
    return Picture()
""")


def test_a_result_jupyter_displays_is_answered_in_its_richest_form(shown):
    html = shown.post("/summary")
    assert html.status_code == 200
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.text == "<table><tr><td>coef</td></tr></table>"
    assert html.headers["vary"] == "Accept"
    assert shown.post("/declared").text == html.text  # a class Jupyter displays is a return type
    chart = shown.post("/chart")
    assert chart.headers["content-type"] == "application/vnd.vegalite.v5+json"
    assert chart.json() == {"mark": "bar"}
    table = shown.post("/table", headers={"Accept": "*/*"})
    assert (table.headers["content-type"], table.json()) == ("application/json", {"rows": 2})
    picture = shown.post("/picture")  # the declined text/html is skipped
    assert (picture.headers["content-type"], picture.content) == ("image/png", b"\x89PNG-bytes")


@pytest.mark.parametrize(("accept", "media_type", "text"), [
    ("text/plain", "text/plain; charset=utf-8", "Summary: coef"),
    ("text/latex;q=0.9, text/plain;q=0.5", "text/latex; charset=utf-8", "\\begin{tabular}"),
    ("text/*;q=0.5, text/html;q=0", "text/latex; charset=utf-8", "\\begin{tabular}"),
    ("application/json, */*;q=0.1", "text/html; charset=utf-8",
     "<table><tr><td>coef</td></tr></table>"),
])
def test_the_accept_header_chooses_the_representation(shown, accept, media_type, text):
    response = shown.post("/summary", headers={"Accept": accept})
    assert response.status_code == 200
    assert (response.headers["content-type"], response.text) == (media_type, text)


def test_a_representation_the_client_does_not_accept_is_406(shown):
    response = shown.post("/summary", headers={"Accept": "application/json"})
    assert response.status_code == 406
    assert "text/html" in response.json()["detail"]


def test_a_value_no_protocol_covers_is_a_500_naming_function_type_and_fix(app):
    client = app(DISPLAYABLE, """#| api
def opaque():
    return Opaque()

def holds_one():
    return {"a": Opaque()}

def table_of_them():
    import pandas as pd
    return pd.DataFrame({"a": [Opaque()]})
""")
    response = client.post("/opaque")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert detail.startswith("opaque() returned a value of type Opaque")
    assert "_repr_json_" in detail and "fastapi.Response" in detail
    nested = client.post("/holds_one").json()["detail"]
    assert nested.startswith("holds_one() returned a dict holding a value of type Opaque")
    table = client.post("/table_of_them").json()["detail"]
    assert table.startswith("table_of_them() returned a DataFrame holding a value of type Opaque")


def test_fastapi_answers_a_displayed_result_as_the_fast_path_does(make_notebook):
    client = TestClient(nb2api.create_app(make_notebook(DISPLAYABLE, """#| api
def summary():
    return Summary()
"""), fast_path=False))
    response = client.post("/summary", headers={"Accept": "text/plain"})
    assert (response.status_code, response.text) == (200, "Summary: coef")


def test_openapi_lists_what_a_displayed_or_response_result_can_be(make_notebook, tmp_path):
    """``-> Summary`` documents the media types of its display methods, ``-> Response`` any
    media type (or its class's own), instead of a JSON body that never comes; the export
    documents them alike."""
    from test_export_parity import _both, _paths

    path = make_notebook(DISPLAYABLE, """#| api
import pandas as pd
from fastapi.responses import HTMLResponse, Response

def declared() -> Summary:
    return Summary()

def charted() -> Chart:
    return Chart()

def raw() -> Response:
    return Response("a,b\\n", media_type="text/csv")

def page() -> HTMLResponse:
    return HTMLResponse("<p>hi</p>")

def table() -> pd.DataFrame:  # display methods too, but a schema first
    return pd.DataFrame({"a": [1]})
""")
    served, exported = _both(path, tmp_path, "shown_openapi")
    with TestClient(served) as ours, TestClient(exported) as theirs:
        openapi = ours.get("/openapi.json").json()
        assert _paths(theirs.get("/openapi.json").json()) == _paths(openapi)
        assert ours.post("/raw").text == theirs.post("/raw").text == "a,b\n"

    def content(path: str) -> dict:
        return openapi["paths"][path]["post"]["responses"]["200"]["content"]

    assert content("/declared") == {"text/html": {"schema": {"type": "string"}},
                                    "text/latex": {"schema": {"type": "string"}},
                                    "text/plain": {"schema": {"type": "string"}}}
    assert "406" in openapi["paths"]["/declared"]["post"]["responses"]
    assert list(content("/charted")) == ["*/*"]  # a mimebundle's types are known when it runs
    assert content("/raw") == {"*/*": {"schema": {}}}
    assert list(content("/page")) == ["text/html"]
    binary = {"schema": {"type": "string", "format": "binary"}}  # a table as Arrow, Parquet
    assert content("/table") == {"application/json": {"schema": {
        "$ref": "#/components/schemas/TableResponse"}},
        "application/vnd.apache.arrow.stream": binary, "application/vnd.apache.parquet": binary}


def test_a_series_with_a_multiindex_is_records_like_its_reset_index(app):
    """Not keys such as "('n', 1)": a column per level, as a MultiIndex table's rows are."""
    client = app(SETUP + "\n" + SALES + "\nsales['month'] = sales['day'].dt.month", """#| api
def totals() -> pd.Series:
    return sales.groupby(['region', 'month'])['price'].sum()

def sizes():
    return {"sizes": sales.groupby(['region', 'month']).size()}

def by_region():
    return sales.groupby('region')['price'].sum()
""")
    assert client.post("/totals").json() == [{"region": "n", "month": 1, "price": 4.0},
                                             {"region": "s", "month": 1, "price": 2.0}]
    assert client.post("/sizes").json() == {"sizes": [{"region": "n", "month": 1, "0": 2},
                                                      {"region": "s", "month": 1, "0": 1}]}
    assert client.post("/by_region").json() == {"n": 4.0, "s": 2.0}  # one level: keyed
