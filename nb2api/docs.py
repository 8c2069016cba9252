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

STATIC = Path(__file__).parent / "_static"
_SWAGGER = STATIC / "swagger-ui"
_REDOC = STATIC / "redoc"
ASSETS_PATH = "/_nb2api/static"


def has_local_assets() -> bool:
    return (_SWAGGER / "swagger-ui-bundle.js").is_file() and (
        _REDOC / "redoc.standalone.js"
    ).is_file()


def mount_docs(app: FastAPI) -> None:
    local = has_local_assets()
    if local:
        app.mount(ASSETS_PATH, StaticFiles(directory=STATIC), name="nb2api-static")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        kwargs = {}
        if local:
            kwargs = {
                "swagger_js_url": asset(request, "swagger-ui/swagger-ui-bundle.js"),
                "swagger_css_url": asset(request, "swagger-ui/swagger-ui.css"),
                "swagger_favicon_url": asset(request, "swagger-ui/favicon-32x32.png"),
            }
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - docs", **kwargs
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        kwargs = {}
        if local:
            kwargs = {
                "redoc_js_url": asset(request, "redoc/redoc.standalone.js"),
                "redoc_favicon_url": asset(request, "swagger-ui/favicon-32x32.png"),
                "with_google_fonts": False,
            }
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc", **kwargs
        )
