"""The aiohttp application: routes, middlewares and the state handlers share.

``create_app(appliance)`` builds it; the web service runs it. Middlewares, outermost first: errors (no
traceback ever reaches a client), the body deadline (no slow bodies), SERVING (lets the service
notice a restart from its own request), authentication, CSRF.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from argentic_edge.web import api, auth, inspector_api, pages
from argentic_edge.web.appliance import Appliance
from argentic_edge.web.auth import ACCESS, SUPERVISOR_ADDRESS, Access
from argentic_edge.web.credentials import Credentials
from argentic_edge.web.feed import FEED, StatusFeed, status_document
from argentic_edge.web.keys import APPLIANCE
from argentic_edge.web.logbuffer import WARNINGS
from argentic_edge.web.security import (
    body_deadline,
    csrf,
    errors,
    mark_serving,
    security_headers,
)

STATIC = Path(__file__).parent / "static"
MAX_BODY = 256 * 1024  # a configuration file is a few kilobytes


def create_app(
    appliance: Appliance,
    *,
    supervisor_address: str = SUPERVISOR_ADDRESS,
    status_interval: float = 1.0,
) -> web.Application:
    """The web application for ``appliance``. ``supervisor_address`` is the only source accepted for
    ingress requests in add-on mode (tests pass a loopback address)."""
    app = web.Application(
        middlewares=[errors, body_deadline, mark_serving, auth.authenticate, csrf],
        client_max_size=MAX_BODY,
    )
    config = appliance.config.web
    app[APPLIANCE] = appliance
    app[ACCESS] = Access(
        ingress=config.ingress, supervisor_address=supervisor_address, api_token=config.api_token
    )
    app[inspector_api.STREAMS_END] = asyncio.Event()
    app[FEED] = StatusFeed(lambda: status_document(appliance, WARNINGS), status_interval)
    app.on_response_prepare.append(security_headers)
    app.cleanup_ctx.append(_recent_warnings)
    app.cleanup_ctx.append(_credentials)
    app.on_shutdown.append(_end_streams)
    _routes(app.router)
    return app


def _routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", pages.index, name="index")
    router.add_get("/config", pages.config, name="config")
    login = router.add_resource("/login", name="login")
    login.add_route("GET", auth.login_page)
    login.add_route("POST", auth.login)
    router.add_post("/logout", auth.logout, name="logout")
    router.add_get("/healthz", api.healthz, name="healthz")
    router.add_get("/metrics", api.prometheus, name="metrics")
    router.add_get("/api/status", api.status, name="status")
    router.add_get("/api/events", api.events, name="events")
    config = router.add_resource("/api/config", name="api_config")
    config.add_route("GET", api.config_view)
    config.add_route("PUT", api.config_save)
    router.add_post("/api/config/check", api.config_check, name="config_check")
    router.add_post(
        "/api/peers/{peer_id}/{action:approve|forget}", api.peer_action, name="peer_action"
    )
    router.add_post(
        "/api/homeassistant/remove", api.remove_from_home_assistant, name="homeassistant_remove"
    )
    router.add_get("/api/openapi.json", api.openapi_document, name="openapi")
    _inspector_routes(router)
    router.add_static("/static", STATIC, name="static")


def _inspector_routes(router: web.UrlDispatcher) -> None:
    for page in pages.INSPECTOR_PAGES:
        router.add_get(f"/{page}", pages.inspector_page, name=f"page_{page}")
    for name in ("topics", "tasks", "tools", "diagnostics", "history", "stream"):
        router.add_get(f"/api/inspector/{name}", getattr(inspector_api, name), name=f"i_{name}")
    router.add_post("/api/bus/publish", inspector_api.publish_message, name="bus_publish")
    router.add_get("/api/inspector/recording", inspector_api.recording, name="recording")
    router.add_post(
        "/api/inspector/recording/start", inspector_api.recording_start, name="recording_start"
    )
    router.add_post(
        "/api/inspector/recording/stop", inspector_api.recording_stop, name="recording_stop"
    )
    router.add_get(
        "/api/inspector/recording/download",
        inspector_api.recording_download,
        name="recording_download",
    )


async def _recent_warnings(app: web.Application) -> AsyncIterator[None]:
    WARNINGS.attach()
    yield
    WARNINGS.detach()


async def _credentials(app: web.Application) -> AsyncIterator[None]:
    """Load (or create) the password hash and session key: file I/O and scrypt, off the loop."""
    config, access = app[APPLIANCE].config, app[ACCESS]
    access.credentials = await asyncio.get_running_loop().run_in_executor(
        None, Credentials.load, config.data_path, config.web.password, not access.ingress
    )
    yield


async def _end_streams(app: web.Application) -> None:
    app[inspector_api.STREAMS_END].set()
    await app[FEED].close()
