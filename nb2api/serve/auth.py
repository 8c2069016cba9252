"""Optional bearer-token auth for the notebook's routes (``--token`` / ``NB2API_TOKEN``).

A FastAPI dependency on ``HTTPBearer``, so ``/docs`` shows the security scheme and its Authorize
button. Tokens are compared in constant time. ``/healthz`` and ``/readyz`` stay open for probes.
"""

# No "from __future__ import annotations": FastAPI reads check_token's annotations at runtime,
# and they name a local (bearer).

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

SCHEME_NAME = "bearerToken"


@dataclass(frozen=True)
class TokenAuth:
    """The token check of an app: the dependency its routes carry, and the one ``Authorization``
    header value that the dependency certainly accepts (``None`` when no single value is
    certain, e.g. a token with spaces)."""

    depends: DependsParam
    accepted_header: bytes | None


def require_token(token: str) -> TokenAuth:
    """A ``Depends`` that answers 401 (with ``WWW-Authenticate: Bearer``) unless the request
    carries ``Authorization: Bearer <token>``, and that header's exact value."""
    if not token:
        raise ValueError("the token must not be empty")
    expected = token.encode()
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name=SCHEME_NAME,
        description="The token the service was started with (`--token` or `NB2API_TOKEN`).",
    )

    async def check_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if credentials is None:
            raise HTTPException(
                401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not secrets.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(
                401,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    # HTTPBearer takes what follows the first space, stripped: for a token of printable ASCII
    # without whitespace, "Bearer <token>" is certainly accepted. Other headers may be too; the
    # dependency decides those.
    plain = token.isascii() and token.isprintable() and not any(c.isspace() for c in token)
    return TokenAuth(Depends(check_token), b"Bearer " + expected if plain else None)
