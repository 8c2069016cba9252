"""Webhooks: POST a job's status document to the ``Webhook-URL`` its request gave, when it ends.

Signed as the Standard Webhooks specification says (standardwebhooks.com): headers
``webhook-id`` (the same for every attempt), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``. The key is the
``--webhook-secret``: a ``whsec_``-prefixed base64 secret is decoded, as the specification's
libraries do; any other text is used as its UTF-8 bytes.

Only hosts listed in ``--webhook-allow`` may be called, so that a client cannot make the server
reach internal addresses; any other URL is refused with a 422 when the job is submitted.
Redirects are not followed, for the same reason. A delivery that fails (no answer, or a status
other than 2xx) is tried again after 0.5, 1, 2, 4 s; each attempt is recorded on the job.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

logger = logging.getLogger("nb2api")

ATTEMPTS = 5
BACKOFF = 0.5  # seconds before the second attempt; doubled before each next one
TIMEOUT = 10.0  # seconds an attempt may take


def signing_key(secret: str) -> bytes:
    """The HMAC key of ``secret``: base64-decoded after a ``whsec_`` prefix, else its bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            pass
    return secret.encode("utf-8")


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer, not a new address to call


_OPENER = urllib.request.build_opener(_NoRedirects)


class Webhooks:
    """Checks ``Webhook-URL`` at submit; delivers, signs and retries when a job ends."""

    def __init__(self, allow: tuple[str, ...], secret: str | None,
                 record: Callable[[str, dict[str, Any]], None]) -> None:
        self.allow = {host.lower() for host in allow}
        self.key = signing_key(secret) if secret else None
        self.record = record

    def checked(self, url: str | None) -> str | None:
        """``url`` if webhooks may call it; 422 otherwise."""
        if url is None:
            return None
        if not self.allow:
            raise HTTPException(422, "Webhook-URL is refused: this server allows no webhook "
                                     "hosts (start it with --webhook-allow HOST)")
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise HTTPException(422, "Webhook-URL is not a URL") from None
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise HTTPException(422, "Webhook-URL must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise HTTPException(422, "Webhook-URL must not hold a user name or password")
        if host not in self.allow and f"{host}:{port}" not in self.allow:
            raise HTTPException(
                422, f"Webhook-URL host {host!r} is not allowed (--webhook-allow lists the hosts "
                "a webhook may call)",
            )
        return url.strip()

    async def deliver(self, job_id: str, url: str,
                      document: Callable[[], dict[str, Any] | None]) -> bool:
        """POST the job's document to ``url`` until an attempt gets a 2xx; whether one did."""
        message_id = f"msg_{job_id}"
        for attempt in range(1, ATTEMPTS + 1):
            payload = document()
            if payload is None:
                return False  # expired meanwhile
            payload.pop("webhook", None)
            body = json.dumps(payload).encode()
            timestamp = int(time.time())
            headers = {"content-type": "application/json", "webhook-id": message_id,
                       "webhook-timestamp": str(timestamp), "user-agent": "nb2api-webhooks"}
            if self.key is not None:
                headers["webhook-signature"] = sign(self.key, message_id, timestamp, body)
            status, error = await asyncio.to_thread(_post, url, body, headers)
            self.record(job_id, {"attempt": attempt, "at": _now(), "status": status,
                                 "error": error})
            if status is not None and 200 <= status < 300:
                return True
            logger.warning("webhook of job %s to %s: attempt %d failed (%s)", job_id,
                           urlsplit(url).netloc, attempt, error or status)
            if attempt < ATTEMPTS:
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
        return False


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
