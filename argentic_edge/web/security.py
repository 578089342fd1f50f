"""Protections every response and every mutating request goes through.

- Headers: a strict Content-Security-Policy (no inline script, nothing from outside the origin),
  nosniff, same-origin framing, no cross-origin referrers. Home Assistant's ingress shows the page
  in an iframe of the Home Assistant frontend, but both are served by Home Assistant from the same
  origin (``/api/hassio_ingress/<token>/``), so ``frame-ancestors 'self'`` and ``SAMEORIGIN`` hold
  there too, while every other site stays unable to frame the page.
- CSRF: a mutating request from a browser (session cookie or ingress) must carry the per-session
  token in ``X-CSRF-Token`` (or a ``csrf`` form field) and, outside ingress, an Origin that is ours.
  Bearer-token requests are exempt: a third-party page cannot make the browser add that header.
- Errors: HTTP errors become short JSON for the API; anything unexpected is logged and answered
  500 without details, so no traceback or value ever reaches a client.
- Bodies: read whole within ``BODY_TIMEOUT`` before any handler waits on them.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from argentic_edge.web.keys import IDENTITY

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_TIMEOUT = 30.0  # seconds for a whole body (at most 256 KiB): 9 KB/s, a poor Wi-Fi link

# The application whose request is being handled; lets the web service notice that it is being
# restarted by one of its own requests (a configuration save) and not wait for that request.
SERVING: contextvars.ContextVar[web.Application | None] = contextvars.ContextVar(
    "argentic_edge_web_serving", default=None
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, errors and static files included."""
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "SAMEORIGIN"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.match_info.route.name == "static":
        headers.setdefault("Cache-Control", "no-cache")
    else:
        headers.setdefault("Cache-Control", "no-store")


def _same_origin(request: web.Request) -> bool:
    """Origin (or Referer) names this host; absent both, only the token vouches."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return False
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return source is None
    return urlsplit(source).netloc == request.host


async def _form_token(request: web.Request) -> str:
    if request.content_type != "application/x-www-form-urlencoded":
        return ""
    value = (await request.post()).get("csrf")
    return value if isinstance(value, str) else ""


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE_METHODS:
        return await handler(request)
    identity = request.get(IDENTITY)
    if identity is not None and identity.kind == "token":
        return await handler(request)
    if (identity is None or identity.kind == "session") and not _same_origin(request):
        raise web.HTTPForbidden(text="cross-site request refused\n")
    if identity is not None:
        given = request.headers.get("X-CSRF-Token") or await _form_token(request)
        if not identity.csrf or not hmac.compare_digest(given.encode(), identity.csrf.encode()):
            raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page\n")
    return await handler(request)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as JSON for API clients; unexpected exceptions as a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not (request.path.startswith("/api/") or request.path == "/metrics"):
            raise
        if exc.content_type == "text/plain":
            exc.text = json.dumps({"error": (exc.text or exc.reason).strip()})
            exc.content_type = "application/json"
        raise
    except Exception:
        log.exception("web: %s %s failed", request.method, request.path)
        raise web.HTTPInternalServerError(
            text="internal error; see the appliance's log\n"
        ) from None


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body within ``BODY_TIMEOUT``, before authentication and any handler: a
    client that sends its headers and then trickles its body (or stops) would otherwise hold its
    connection for as long as it liked, the login form included. aiohttp keeps the body for
    ``read()`` and ``post()``; multipart forms are refused, because aiohttp streams those instead
    of keeping them (nothing of ours sends one)."""
    if request.body_exists:
        if request.content_type == "multipart/form-data":
            raise web.HTTPUnsupportedMediaType(
                text="send forms as application/x-www-form-urlencoded"
            )
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                await request.read()
        except TimeoutError:
            raise web.HTTPRequestTimeout(
                text=f"the request body did not arrive within {BODY_TIMEOUT:g} s"
            ) from None
    return await handler(request)


@web.middleware
async def mark_serving(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set SERVING for the duration of the request (and the tasks it starts)."""
    token = SERVING.set(request.app)
    try:
        return await handler(request)
    finally:
        SERVING.reset(token)
