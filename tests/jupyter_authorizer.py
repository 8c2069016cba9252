"""An authorizer for the test Jupyter server: a request with ``X-Test-Role: reader`` may only read.

Jupyter imports it by name (``--ServerApp.authorizer_class``), so it lives in a module of its own.
"""

from jupyter_server.auth import Authorizer


class ReaderRoleAuthorizer(Authorizer):
    def is_authorized(self, handler, user, action, resource) -> bool:
        if handler.request.headers.get("X-Test-Role") == "reader":
            return action == "read"
        return True
