"""The inspector's API: topics, tasks, tools, diagnoses, the charts' history, the event stream of
decoded messages, publishing on the bus, and the page's recording.

Every read keeps the inspector watching for its lease (watcher.py), so a script that polls the
API sees traffic like a page does; while nothing asks, the inspector does not read the bus.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, TypeVar

from aiohttp import web

from argentic_edge.client.bus import BusUnreachable, publish
from argentic_edge.inspector.watcher import InspectorService
from argentic_edge.topics import TopicError, TopicFilter, validate_topic_name
from argentic_edge.web.feed import to_json
from argentic_edge.web.keys import APPLIANCE

MAX_LIMIT = 10_000
TOPICS_SHOWN = 500  # topics in one answer unless ?limit= asks for more (a page shows no more)
STREAM_PAYLOAD = 2048  # bytes of each payload sent on the stream
STREAM_SECONDS = 3600.0  # a stream ends after this long at most (the page's EventSource reconnects)
STREAM_SHORTEST = 0.1  # seconds: a shorter stream could end before its first event
STATUS_EVERY = 2.0  # seconds between the stream's "reader" events (sampling, skipped counts)
PUBLISH_WAIT = 0.5  # seconds a publish waits for a matching subscriber


STREAMS_END = web.AppKey("inspector_streams_end", asyncio.Event)  # set on shutdown


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(text=to_json(document), status=status, content_type="application/json")


def _inspector(request: web.Request, lease: bool = True) -> InspectorService:
    inspector = request.app[APPLIANCE].inspector()
    if inspector is None:
        raise web.HTTPConflict(text="the inspector is not running")
    if lease:
        inspector.lease()
    return inspector


Number = TypeVar("Number", int, float)
KINDS = {int: "a whole number", float: "a number"}  # what a query parameter must be, said


def _number(request: web.Request, name: str, default: Number, low: Number, high: Number) -> Number:
    """Query parameter ``name`` of the default's type within [low, high] (fractions allowed
    for a float; ``nan`` fails the bounds and is refused), else a 400 saying what it must be."""
    text = request.query.get(name)
    if text is None:
        return default
    kind = type(default)
    try:
        value = kind(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name}: expected {KINDS[kind]}, got {text!r}") from None
    if not low <= value <= high:
        raise web.HTTPBadRequest(text=f"{name}: expected {low!r} to {high!r}, got {value!r}")
    return value


def _filter(request: web.Request) -> TopicFilter | None:
    text = request.query.get("filter")
    if text is None:
        return None
    try:
        return TopicFilter(text)
    except TopicError as exc:
        raise web.HTTPBadRequest(text=f"filter: {exc} (got {text!r})") from None


def _watch_state(inspector: InspectorService) -> dict[str, Any]:
    return {"messages": inspector.messages, "reader": inspector.reader_status()}


async def topics(request: web.Request) -> web.Response:
    inspector = _inspector(request)
    now = time.time()
    topic = request.query.get("topic")
    if topic is not None:
        detail = inspector.topics.detail(topic, now)
        if detail is None:
            raise web.HTTPNotFound(text=f"no topic {topic!r} seen")
        return _json(detail)
    limit = _number(request, "limit", TOPICS_SHOWN, 1, MAX_LIMIT)
    return _json({**inspector.topics.rows(_filter(request), now, limit), **_watch_state(inspector)})


async def tasks(request: web.Request) -> web.Response:
    inspector = _inspector(request)
    limit = _number(request, "limit", 500, 1, MAX_LIMIT)
    return _json({**inspector.tasks.snapshot(time.time(), limit), **_watch_state(inspector)})


async def tools(request: web.Request) -> web.Response:
    inspector = _inspector(request)
    return _json({**inspector.tools.snapshot(time.time()), **_watch_state(inspector)})


async def diagnostics(request: web.Request) -> web.Response:
    inspector = _inspector(request)
    return _json({**inspector.diagnoses(), **_watch_state(inspector)})


async def history(request: web.Request) -> web.Response:
    inspector = _inspector(request, lease=False)  # counters only: no need to read the bus
    return _json({"interval": inspector.history_interval, "points": inspector.history.rates()})


def _event(name: str, document: Any) -> bytes:
    return f"event: {name}\ndata: {to_json(document)}\n\n".encode()


def _message(item: tuple[float, str, bytes, Any]) -> dict[str, Any]:
    now, topic, payload, envelope = item
    return {
        "time": now,
        "topic": topic,
        "size": len(payload),
        "envelope": envelope.summary(),
        "payload": payload[:STREAM_PAYLOAD].decode("utf-8", "replace"),
        "truncated": len(payload) > STREAM_PAYLOAD,
    }


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``message`` per decoded bus message matching ``filter`` (default
    ``#``), ``reader`` every few seconds with the sampling state and what this stream dropped."""
    inspector = _inspector(request, lease=False)  # watched while connected, not after
    topic_filter = _filter(request) or TopicFilter("#")
    seconds = _number(request, "seconds", STREAM_SECONDS, STREAM_SHORTEST, STREAM_SECONDS)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    deadline = time.monotonic() + seconds
    try:
        async with inspector.listen(topic_filter) as listener:
            next_status = 0.0
            ending = request.app[STREAMS_END]
            while (remaining := deadline - time.monotonic()) > 0 and not ending.is_set():
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + STATUS_EVERY
                    await response.write(
                        _event("reader", {"dropped": listener.dropped, **_watch_state(inspector)})
                    )
                try:
                    async with asyncio.timeout(min(remaining, STATUS_EVERY)):
                        item = await listener.queue.get()
                except TimeoutError:
                    continue
                chunk = [_event("message", _message(item))]
                while not listener.queue.empty() and len(chunk) < 200:
                    chunk.append(_event("message", _message(listener.queue.get_nowait())))
                await response.write(b"".join(chunk))
    except ConnectionResetError:
        pass  # the page went away
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send a JSON object")
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _payload(body: dict[str, Any]) -> bytes:
    value = body.get("payload")
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":")).encode("utf-8")
    raise web.HTTPBadRequest(
        text=f"payload: expected a string or a JSON object, got {type(value).__name__}"
    )


async def publish_message(request: web.Request) -> web.Response:
    """Put one message on the bus: ``{"topic": "...", "payload": "..." or {...}}``."""
    inspector = _inspector(request, lease=False)
    body = await _body(request)
    topic = body.get("topic")
    if not isinstance(topic, str):
        raise web.HTTPBadRequest(text=f"topic: expected a string, got {type(topic).__name__}")
    try:
        validate_topic_name(topic)
    except TopicError as exc:
        raise web.HTTPBadRequest(text=f"topic: {exc} (got {topic!r})") from None
    payload = _payload(body)
    try:
        matched = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: publish(
                inspector.context,
                inspector.publish_endpoint,
                topic,
                payload,
                wait=PUBLISH_WAIT,
                encoding=inspector.topic_encoding,
            ),
        )
    except BusUnreachable as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
    return _json({"ok": True, "topic": topic, "bytes": len(payload), "subscriber_seen": matched})


async def recording(request: web.Request) -> web.Response:
    inspector = _inspector(request, lease=False)
    recorder = inspector.recorder
    return _json(recorder.status() if recorder else {"running": False})


async def recording_start(request: web.Request) -> web.Response:
    inspector = _inspector(request, lease=False)
    body = await _body(request)
    text = body.get("filter", "#")
    if not isinstance(text, str):
        raise web.HTTPBadRequest(text=f"filter: expected a string, got {type(text).__name__}")
    try:
        topic_filter = TopicFilter(text)
    except TopicError as exc:
        raise web.HTTPBadRequest(text=f"filter: {exc} (got {text!r})") from None
    try:
        recorder = inspector.start_recording(topic_filter)
    except OSError as exc:
        raise web.HTTPConflict(text=f"cannot start a recording: {exc.strerror}") from None
    return _json(recorder.status())


async def recording_stop(request: web.Request) -> web.Response:
    inspector = _inspector(request, lease=False)
    recorder = inspector.stop_recording()
    return _json(recorder.status() if recorder else {"running": False})


async def recording_download(request: web.Request) -> web.StreamResponse:
    inspector = _inspector(request, lease=False)
    if inspector.recorder is None or not inspector.recording_path.exists():
        raise web.HTTPNotFound(text="nothing recorded yet")
    return web.FileResponse(
        inspector.recording_path,
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": 'attachment; filename="recording.jsonl"',
        },
    )
