"""The JSON API, /healthz, /metrics and the live event stream. Handlers read state; the
appliance, its services and the ConfigEditor own it."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from argentic_edge.config import ConfigError
from argentic_edge.web import metrics, openapi
from argentic_edge.web.appliance import Appliance
from argentic_edge.web.configedit import ApplyError, ConfigEditor, load_text, problems_json
from argentic_edge.web.feed import FEED, StatusUnavailable, status_document, to_json
from argentic_edge.web.keys import APPLIANCE, IDENTITY
from argentic_edge.web.logbuffer import WARNINGS

log = logging.getLogger(__name__)

JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)
MAX_JSON_DEPTH = 32  # a configuration nests 5 or 6 levels; what follows the parser recurses


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(text=to_json(document), status=status, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    """Anyone may ask whether the appliance is up (the add-on's HEALTHCHECK does, anonymously);
    only who may see the status (the Supervisor, a token, a session) learns why not: the reasons
    name brokers, addresses and errors."""
    healthy, reasons = request.app[APPLIANCE].health()
    answer: dict[str, Any] = {"ok": healthy}
    if IDENTITY in request:
        answer["reasons"] = reasons
    return _json(answer, 200 if healthy else 503)


def _status(request: web.Request) -> dict[str, Any]:
    try:
        return status_document(request.app[APPLIANCE], WARNINGS)
    except StatusUnavailable as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None


async def status(request: web.Request) -> web.Response:
    return _json(_status(request))


async def prometheus(request: web.Request) -> web.Response:
    text = metrics.render(_status(request), WARNINGS.total)
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``data:`` line with the status document per interval."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    try:
        async for document in request.app[FEED].updates():
            await response.write(f"data: {document}\n\n".encode())
    except ConnectionResetError:
        pass  # the page went away
    return response


async def openapi_document(request: web.Request) -> web.Response:
    return _json(openapi.document())


# --- configuration -------------------------------------------------------------------------


async def config_view(request: web.Request) -> web.Response:
    editor = ConfigEditor(request.app[APPLIANCE])
    try:
        view = editor.view()
    except ConfigError as exc:
        return _json({"problems": problems_json(exc, None)}, 422)
    if "yaml" in request.headers.get("Accept", ""):
        return web.Response(text=view["yaml"], content_type="application/yaml")
    return _json(view)


async def _submitted(request: web.Request) -> tuple[str, Any]:
    """("json", document) or ("yaml", text), by content type; 4xx for anything else."""
    kind = request.content_type
    if kind not in JSON_TYPES | YAML_TYPES:
        raise web.HTTPUnsupportedMediaType(
            text="send the configuration as application/json or application/yaml"
        )
    body = await request.read()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body is not UTF-8 text") from None
    if kind in YAML_TYPES:
        return "yaml", text
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="the body is not valid JSON") from None
    if _deeper_than(document, MAX_JSON_DEPTH):
        raise web.HTTPBadRequest(text=f"the JSON body nests more than {MAX_JSON_DEPTH} levels")
    return "json", document


def _deeper_than(document: Any, limit: int) -> bool:
    """True when lists and objects nest more than ``limit`` levels (walked without recursion)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            stack.extend(
                (item, depth + 1) for item in (value.values() if isinstance(value, dict) else value)
            )
    return False


def _document_of(kind: str, body: Any) -> Any:
    """The submitted document, for masking problem values; None if it does not parse."""
    if kind == "json":
        return body
    try:
        return load_text(body)
    except ConfigError:
        return None


async def config_save(request: web.Request) -> web.Response:
    editor = ConfigEditor(request.app[APPLIANCE])
    kind, body = await _submitted(request)
    prepare = editor.prepare_document if kind == "json" else editor.prepare_text
    try:
        saved = await editor.save(lambda: prepare(body))
    except ConfigError as exc:
        return _json({"problems": problems_json(exc, _document_of(kind, body))}, 422)
    except ApplyError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    return _json({**saved, "web": _web_now(request.app[APPLIANCE])})


def _web_now(appliance: Appliance) -> dict[str, Any] | None:
    """Where the web serves after a save (None: it is off), so the page can follow a new
    port or scheme instead of waiting on the old one."""
    section = appliance.status().get("web")
    if not section or section.get("port") is None:
        return None
    return {"port": section["port"], "https": section["https"], "ingress": section["ingress"]}


async def config_check(request: web.Request) -> web.Response:
    editor = ConfigEditor(request.app[APPLIANCE])
    kind, body = await _submitted(request)
    try:
        if kind == "json":
            editor.prepare_document(body)
        else:
            editor.prepare_text(body)
    except ConfigError as exc:
        return _json({"problems": problems_json(exc, _document_of(kind, body))}, 422)
    return _json({"valid": True})


# --- peers ---------------------------------------------------------------------------------


async def remove_from_home_assistant(request: web.Request) -> web.Response:
    """Clear the appliance's retained discovery topics: the step before uninstalling."""
    service = request.app[APPLIANCE].home_assistant()
    if service is None:
        raise web.HTTPConflict(text="Home Assistant discovery is off (bridge.ha_discovery)")
    try:
        removed = await service.withdraw()
    except Exception as exc:  # BridgeError: not connected to a broker
        raise web.HTTPConflict(text=str(exc)) from None
    return _json({"ok": True, "removed": removed})


async def peer_action(request: web.Request) -> web.Response:
    """Approve or forget a discovered peer through the peers service."""
    peer_id, action = request.match_info["peer_id"], request.match_info["action"]
    peers = request.app[APPLIANCE].peers()
    if peers is None:
        raise web.HTTPConflict(text="discovery is disabled")
    try:
        result = await (peers.approve if action == "approve" else peers.forget)(peer_id)
    except KeyError:
        raise web.HTTPNotFound(text=f"no peer {peer_id!r}") from None
    except Exception as exc:  # the peers service refuses with its own errors (FederationError)
        log.warning("web: %s of a peer refused: %s", action, exc)
        raise web.HTTPConflict(text=str(exc)) from None
    return _json(
        {
            "ok": True,
            "peer": peer_id,
            "action": action,
            "result": result if isinstance(result, dict) else None,
        }
    )
