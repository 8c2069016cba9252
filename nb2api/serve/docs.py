"""``/docs`` and ``/redoc`` that work without internet access.

FastAPI's pages load Swagger UI and ReDoc from a CDN, which many data-science machines cannot
reach. The wheel ships the assets (built from the npm packages ``swagger-ui-dist`` and ``redoc``) in
``nb2api/_static``; when they are missing (a source tree built without Node) the CDN is used.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent.parent / "_static"  # nb2api/_static
_SWAGGER = STATIC / "swagger-ui"
_REDOC = STATIC / "redoc"
ASSETS_PATH = "/_nb2api/static"


def has_local_assets() -> bool:
    return (_SWAGGER / "swagger-ui-bundle.js").is_file() and (
        _REDOC / "redoc.standalone.js"
    ).is_file()


# Keyword arguments of FastAPI's page builders -> files under nb2api/_static.
_SWAGGER_ASSETS = {
    "swagger_js_url": "swagger-ui/swagger-ui-bundle.js",
    "swagger_css_url": "swagger-ui/swagger-ui.css",
    "swagger_favicon_url": "swagger-ui/favicon-32x32.png",
}
_REDOC_ASSETS = {
    "redoc_js_url": "redoc/redoc.standalone.js",
    "redoc_favicon_url": "swagger-ui/favicon-32x32.png",
}


def mount_docs(app: FastAPI) -> None:
    local = has_local_assets()
    if local:
        app.mount(ASSETS_PATH, StaticFiles(directory=STATIC), name="nb2api-static")

    def page(request: Request, assets: dict[str, str]) -> dict[str, str]:
        """The openapi URL and, when the wheel has them, local asset URLs, under root_path."""
        root = request.scope.get("root_path", "")
        urls = {key: f"{root}{ASSETS_PATH}/{name}" for key, name in assets.items()} if local else {}
        return {"openapi_url": f"{root}{app.openapi_url}", **urls}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(title=f"{app.title} - docs", **page(request, _SWAGGER_ASSETS))

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        fonts = {"with_google_fonts": False} if local else {}
        return get_redoc_html(title=f"{app.title} - ReDoc", **page(request, _REDOC_ASSETS), **fonts)
