"""Choosing a representation: the Accept header's q-values, then nb2api's preference order."""

import pytest

from nb2api.types import display

OFFERED = ["application/json", "application/vnd.vegalite.v5+json", "text/html", "image/png",
           "text/plain"]


@pytest.mark.parametrize(("accept", "expected"), [
    (None, OFFERED),
    ("*/*", OFFERED),
    ("text/*", ["text/html", "text/plain"]),
    ("image/png;q=0.8, text/html;q=0.9", ["text/html", "image/png"]),
    ("*/*;q=0.1, text/plain", ["text/plain", "application/json",
                               "application/vnd.vegalite.v5+json", "text/html", "image/png"]),
    ("text/*;q=1, text/html;q=0", ["text/plain"]),  # the most specific range decides
    ("TEXT/HTML", ["text/html"]),
    ("text/html;q=oops", []),
    ("application/xml", []),
])
def test_acceptable_orders_by_q_then_preference(accept, expected):
    assert display.acceptable(accept, OFFERED) == expected


def test_representations_follow_the_preference_order():
    class Shown:
        def _repr_png_(self):
            return b"png"

        def _repr_html_(self):
            return "<b>x</b>"

        def _repr_mimebundle_(self, include=None, exclude=None):
            return {"text/plain": "x", "application/vnd.vegalite.v5+json": {}}, {}

    found = display.representations(Shown())
    assert list(found) == ["application/vnd.vegalite.v5+json", "text/html", "image/png",
                           "text/plain"]
    assert found["text/plain"]() == "x"  # the bundle's own text, not repr()


def test_an_object_without_any_display_method_has_no_representation():
    class Bare:
        pass

    assert display.representations(Bare()) == {}
    assert display.response(Bare(), lambda value: b"") is None
