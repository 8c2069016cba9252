"""REST handlers for the "Serve as API" button, and the proxy to the served apps.

REST, under the server's base URL (every method requires Jupyter auth, writes need XSRF
or a token):
- ``GET  nb2api/api/apps``         the served notebooks;
- ``POST nb2api/api/serve``        ``{"path": "dir/nb.ipynb"}``: serve it, or reload it;
- ``GET  nb2api/api/apps/<id>``    one served notebook;
- ``DELETE`` or ``POST nb2api/api/apps/<id>``: stop it;
- ``GET  nb2api/api/apps/<id>/errors`` its last errors, newest first, with their tracebacks
  and the cell and line they were raised at (for the API panel; never in the app's answers).

The served API itself lives under ``nb2api/apps/<id>/`` (``/docs``, ``/redoc``, routes).
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server_proxy.handlers import ProxyHandler
from tornado import web

from ..serve.limits import too_large_body
from .manager import AppManager, PathRefused, ServeError

# Serving a notebook runs its code, so it needs the same permission as running a kernel.
_AUTH_RESOURCE = "kernels"
_APP_ID = r"(?P<app_id>[0-9a-f]{12})"


class _Base(APIHandler):
    auth_resource = _AUTH_RESOURCE

    def initialize(self, manager: AppManager) -> None:
        self.manager = manager

    def _app_or_404(self, app_id: str):
        app = self.manager.get(app_id)
        if app is None:
            raise web.HTTPError(404, f"no served notebook with id {app_id}")
        return app


class AppsHandler(_Base):
    @web.authenticated
    @authorized(action="read")
    def get(self) -> None:
        self.finish(json.dumps([app.to_json() for app in self.manager.apps.values()]))


class ServeHandler(_Base):
    @web.authenticated
    @authorized(action="execute")
    async def post(self) -> None:
        body = self.get_json_body() or {}
        path = body.get("path") if isinstance(body, dict) else None
        if not isinstance(path, str):
            raise web.HTTPError(400, 'the body must be {"path": "<notebook path>"}')
        try:
            app = await self.manager.serve(path)
        except PathRefused as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        except ServeError as exc:
            # The notebook's own problem: the one-line message names the cell.
            self.set_status(422)
            self.finish(json.dumps({"message": str(exc), "path": path}))
            return
        self.finish(json.dumps(app.to_json()))


class AppHandler(_Base):
    @web.authenticated
    @authorized(action="read")
    def get(self, app_id: str) -> None:
        self.finish(json.dumps(self._app_or_404(app_id).to_json()))

    @web.authenticated
    @authorized(action="execute")
    async def delete(self, app_id: str) -> None:
        await self._stop(app_id)

    @web.authenticated
    @authorized(action="execute")
    async def post(self, app_id: str) -> None:
        await self._stop(app_id)

    async def _stop(self, app_id: str) -> None:
        if not await self.manager.stop(app_id):
            raise web.HTTPError(404, f"no served notebook with id {app_id}")
        self.set_status(204)
        self.finish()


class ErrorsHandler(_Base):
    @web.authenticated
    @authorized(action="read")
    def get(self, app_id: str) -> None:
        app = self._app_or_404(app_id)
        self.finish(json.dumps([error.to_json() for error in reversed(app.errors)]))


class AppProxyHandler(ProxyHandler):
    """Forward ``nb2api/apps/<id>/<path>`` to the child serving that notebook.

    ``ProxyHandler.prepare`` requires Jupyter authentication on every request; every method
    also needs the permission serving needs, since calling the app runs the notebook's code
    (its docs pages are the app too).
    """

    auth_resource = _AUTH_RESOURCE

    def initialize(self, manager: AppManager) -> None:
        self.manager = manager

    def check_xsrf_cookie(self) -> None:
        # The served API is called by Swagger UI and by scripts, which send no XSRF
        # token; but a browser's cross-site write must not ride on the Jupyter cookie.
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return
        if not hasattr(self, "_jupyter_current_user"):
            return  # called before authentication; JupyterHandler.prepare calls it again
        if self.token_authenticated:
            return
        if not self.check_origin():
            raise web.HTTPError(403, "cross-origin request refused")

    async def _forward(self, app_id: str, proxied_path: str | None):
        app = self.manager.get(app_id)
        if app is None or app.socket is None:
            raise web.HTTPError(404, f"no served notebook with id {app_id}")
        limit = self.manager.max_body_size
        if limit and len(self.request.body or b"") > limit:
            # The child would answer 413 before reading the body, and the proxy, still
            # writing it, would turn that into a 500.
            self.set_status(413)
            self.set_header("Content-Type", "application/json")
            self.finish(too_large_body(limit))
            return None
        self.unix_socket = str(app.socket)
        self.proxy_base = app.prefix[len(self.base_url) :]
        return await self.proxy("localhost", 80, proxied_path or "/")

    def _rewrite_location_header(self, location, host, port, proxied_path):
        # The child knows its root path, so its redirects may already carry the prefix.
        if location.startswith(self.base_url + self.proxy_base):
            return location
        return super()._rewrite_location_header(location, host, port, proxied_path)

    async def open(self, app_id, proxied_path=None):
        raise web.HTTPError(404, "websockets are not proxied")

    @authorized(action="execute")
    async def http_get(self, app_id, proxied_path=None):
        return await self._forward(app_id, proxied_path)

    @authorized(action="execute")
    def post(self, app_id, proxied_path=None):
        return self._forward(app_id, proxied_path)

    @authorized(action="execute")
    def put(self, app_id, proxied_path=None):
        return self._forward(app_id, proxied_path)

    @authorized(action="execute")
    def delete(self, app_id, proxied_path=None):
        return self._forward(app_id, proxied_path)

    @authorized(action="execute")
    def patch(self, app_id, proxied_path=None):
        return self._forward(app_id, proxied_path)

    @authorized(action="execute")
    def head(self, app_id, proxied_path=None):
        return self._forward(app_id, proxied_path)

    @authorized(action="execute")
    def options(self, app_id, proxied_path=None):
        return self._forward(app_id, proxied_path)


def handlers(manager: AppManager) -> list[tuple[str, type, dict]]:
    """URL patterns, relative to the server's base URL."""
    kwargs = {"manager": manager}
    return [
        (r"/nb2api/api/apps", AppsHandler, kwargs),
        (r"/nb2api/api/serve", ServeHandler, kwargs),
        (rf"/nb2api/api/apps/{_APP_ID}", AppHandler, kwargs),
        (rf"/nb2api/api/apps/{_APP_ID}/errors", ErrorsHandler, kwargs),
        (rf"/nb2api/apps/{_APP_ID}(?P<proxied_path>/.*)?", AppProxyHandler, kwargs),
    ]
