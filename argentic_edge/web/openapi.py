"""The OpenAPI description of the JSON API, served at ``/api/openapi.json``.

Written by hand next to the handlers it describes; a test checks that every described path is
routed and every API route is described. The event stream (``/api/events``) is left out on
purpose: it never ends, which API fuzzers cannot handle.
"""

from __future__ import annotations

from typing import Any

from argentic_edge import __version__


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_REFUSED = {
    "401": _error("Not authenticated: log in, or send Authorization: Bearer <web.api_token>."),
    "403": _error(
        "Refused: missing CSRF token, cross-site request, or not from the Supervisor "
        "in add-on mode."
    ),
}
_PROBLEMS = {
    "description": "The configuration is invalid; nothing was changed.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["problems"],
                "properties": {
                    "problems": {"type": "array", "items": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        }
    },
}
# The document is a mapping of sections in either notation (YAML text parses to the same
# values as JSON). Null, like an empty file, is every default. What makes a document valid is
# the configuration schema; its answer (422, naming each problem) is described below.
_CONFIG_DOCUMENT = {"type": "object", "nullable": True, "additionalProperties": True}
_CONFIG_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _CONFIG_DOCUMENT, "example": {"web": {"port": 8099}}},
        "application/yaml": {"schema": _CONFIG_DOCUMENT, "example": {"web": {"port": 8099}}},
    },
}
_TOO_LARGE = {"413": _error("The body is larger than the limit.")}
_UNSUPPORTED = {"415": _error("The body is neither JSON nor YAML.")}
_BAD_BODY = {"400": _error("The body is not valid JSON.")}


_UPLINK = {
    "type": "object",
    "description": "One uplink (service uplink:<name>); the protocol's own keys are in link.",
    "required": ["name", "protocol", "state", "detail", "broker", "routes", "buffer"],
    "properties": {
        "name": {"type": "string"},
        "protocol": {"type": "string", "example": "mqtt"},
        "state": {
            "type": "string",
            "enum": [
                "connecting",
                "connected",
                "waiting for broker",
                "backing off",
                "gave up",
                "stopped",
            ],
        },
        "detail": {"type": "string"},
        "broker": {"type": "string", "nullable": True},
        "session": {"type": "string", "nullable": True, "example": "MQTT 5"},
        "last_error": {"type": "string", "nullable": True},
        "attempts": {"type": "integer"},
        "connections": {"type": "integer"},
        "in_flight": {"type": "integer"},
        "routes": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        "buffer": {
            "type": "object",
            "description": "The outbox: messages, bytes, oldest_age (seconds, null when "
            "empty), max_messages, max_bytes, max_age, dropped_oldest, durable.",
            "additionalProperties": True,
        },
        "link": {"type": "object", "additionalProperties": True},
    },
    "additionalProperties": True,
}


def _status_schema() -> dict[str, Any]:
    section = {"type": "object", "additionalProperties": True}
    return {
        "type": "object",
        "required": [
            "node",
            "bus",
            "uplinks",
            "bridge",
            "homeassistant",
            "peers",
            "certificates",
            "agents",
            "health",
            "warnings",
        ],
        "properties": {
            "node": {
                "type": "object",
                "required": ["name", "version", "uptime"],
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "uptime": {"type": "number"},
                    "addon": {"type": "boolean"},
                },
            },
            "bus": {
                "type": "object",
                "additionalProperties": True,
                "properties": {
                    "connect": {
                        "type": "object",
                        "description": "Where an agent on the LAN connects to the bus.",
                        "required": ["addresses", "messaging_yaml"],
                        "properties": {
                            "addresses": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "Host addresses agents can use: this host's "
                                "LAN addresses when the bus listens on every address "
                                "(0.0.0.0), else the one it is bound to.",
                            },
                            "messaging_yaml": {
                                "type": "string",
                                "description": "An Argentic messaging: block (ZeroMQ, the "
                                "appliance as external proxy) for the first address.",
                            },
                        },
                    }
                },
            },
            "uplinks": {"type": "array", "items": _UPLINK},
            "bridge": {
                **section,
                "description": "The first MQTT uplink's entry of uplinks again (its name before "
                "there were several), or {enabled: false}.",
            },
            "homeassistant": section,
            "peers": section,
            "certificates": section,
            "agents": section,
            "web": section,
            "health": {
                "type": "object",
                "properties": {
                    "ok": {"type": "boolean"},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                },
            },
            "warnings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "time": {"type": "number"},
                        "level": {"type": "string"},
                        "logger": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
        },
        "additionalProperties": True,
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


# What TopicFilter and validate_topic_name accept (argentic_edge/topics.py).
_FILTER_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "pattern": "^(?:(?:\\+|[^/+# \\u0000]*)/)*(?:\\+|#|[^/+# \\u0000]*)$",
}
_TOPIC_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 65535,
    "pattern": "^[^ +#\\u0000]+$",
}
_FILTER = _query("filter", "MQTT-style filter (+ one level, # the rest).", _FILTER_SCHEMA)
_OBJECT = {"type": "object", "additionalProperties": True}
_NOT_RUNNING = {"409": _error("The inspector is not running.")}
_BAD_QUERY = {"400": _error("A query parameter is invalid; the message names it.")}


def _json_answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or _OBJECT}},
    }


def _inspector_get(
    summary: str, parameters: list[dict[str, Any]], answer: str, **more: Any
) -> dict[str, Any]:
    responses = {"200": _json_answer(answer), **_REFUSED, **_NOT_RUNNING, **more}
    if parameters:
        responses.update(_BAD_QUERY)
    return {"get": {"summary": summary, "parameters": parameters, "responses": responses}}


def _inspector_post(summary: str, body: dict[str, Any] | None, answer: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _json_answer(answer), **_REFUSED, **_NOT_RUNNING},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
        operation["responses"].update(
            {**_BAD_BODY, **_TOO_LARGE, "415": _error("The body is not JSON.")}
        )
    return {"post": operation}


_LIMIT = {"type": "integer", "minimum": 1, "maximum": 10000}


def _inspector_paths() -> dict[str, Any]:
    """The inspector's operations (web/inspector_api.py). Every read keeps the inspector
    watching the bus for 30 seconds."""
    return {
        "/api/inspector/topics": _inspector_get(
            "Topics seen on the bus: count, rate, bytes, last seen, the last message decoded; "
            "with topic=, one topic and its whole last message.",
            [
                _FILTER,
                _query("limit", "At most this many topics.", _LIMIT),
                _query("topic", "One topic's detail.", {"type": "string"}),
            ],
            "The topics, sorted, or one topic's detail.",
            **{"404": _error("That topic was not seen.")},
        ),
        "/api/inspector/tasks": _inspector_get(
            "Tool calls paired with their answers by task_id, newest first; latency "
            "percentiles per tool.",
            [_query("limit", "At most this many tasks.", _LIMIT)],
            "Tasks, states and per-tool latencies.",
        ),
        "/api/inspector/tools": _inspector_get(
            "The tool registry as the bus shows it, and the clients' heartbeats.",
            [],
            "Tools and clients.",
        ),
        "/api/inspector/diagnostics": _inspector_get(
            "What went wrong, with its cause.", [], "The diagnoses."
        ),
        "/api/inspector/history": _inspector_get(
            "Rates of the last hour for the charts.", [], "Points, oldest first."
        ),
        "/api/inspector/stream": {
            "get": {
                "summary": "Server-sent events: a 'message' event per decoded bus message "
                "matching the filter, a 'reader' event every 2 s; ends after 'seconds'.",
                "parameters": [
                    _FILTER,
                    _query(
                        "seconds",
                        "End the stream after this many seconds (fractions allowed).",
                        {"type": "number", "minimum": 0.1, "maximum": 3600},
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The event stream.",
                        "content": {
                            "text/event-stream": {
                                "schema": {
                                    "type": "object",
                                    "description": "One event; data is its JSON document.",
                                    "properties": {
                                        "event": {"type": "string", "enum": ["message", "reader"]},
                                        "data": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    **_REFUSED,
                    **_NOT_RUNNING,
                    **_BAD_QUERY,
                },
            }
        },
        "/api/bus/publish": _inspector_post(
            "Publish one message on the bus (payload: text, or JSON sent compact).",
            {
                "type": "object",
                "required": ["topic", "payload"],
                "properties": {
                    "topic": _TOPIC_SCHEMA,
                    "payload": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                },
            },
            "Published; subscriber_seen says whether a subscriber matched.",
        ),
        "/api/inspector/recording": _inspector_get(
            "The page's recording: running or not, what it holds.", [], "Its state."
        ),
        "/api/inspector/recording/start": _inspector_post(
            "Start recording the messages matching a filter (replacing the last recording).",
            {"type": "object", "properties": {"filter": _FILTER_SCHEMA}},
            "Its state.",
        ),
        "/api/inspector/recording/stop": _inspector_post("Stop the recording.", None, "Its state."),
        "/api/inspector/recording/download": {
            "get": {
                "summary": "The recording as JSON lines (argentic-edge replay plays it).",
                "responses": {
                    "200": {
                        "description": "One JSON object per line.",
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    "404": _error("Nothing recorded yet."),
                    **_REFUSED,
                    **_NOT_RUNNING,
                },
            }
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "argentic-edge",
            "version": __version__,
            "description": "Status, configuration and peers of an argentic-edge appliance.",
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: 200 when every enabled service is up. The reasons are "
                    "given to authenticated callers (and the Supervisor) only.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Every enabled service is up.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Health"}
                                }
                            },
                        },
                        "503": {
                            "description": "Some service is down; the reasons say which.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Health"}
                                }
                            },
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format 0.0.4.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_REFUSED,
                    },
                }
            },
            "/api/status": {
                "get": {
                    "summary": "Everything the status page shows.",
                    "responses": {
                        "200": {
                            "description": "The status document.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Status"}
                                }
                            },
                        },
                        "503": _error("A service failed to report its status."),
                        **_REFUSED,
                    },
                }
            },
            "/api/config": {
                "get": {
                    "summary": "The configuration file, secrets masked.",
                    "responses": {
                        "200": {
                            "description": "The raw document, the YAML text and the form.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ConfigView"}
                                }
                            },
                        },
                        "422": _PROBLEMS,
                        **_REFUSED,
                    },
                },
                "put": {
                    "summary": "Validate, apply and save a configuration. A masked secret "
                    "left unchanged keeps the stored value.",
                    "requestBody": _CONFIG_BODY,
                    "responses": {
                        "200": {
                            "description": "Applied and saved.",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Saved"}
                                }
                            },
                        },
                        **_BAD_BODY,
                        **_REFUSED,
                        "409": _error("Valid, but could not be applied; nothing changed."),
                        **_TOO_LARGE,
                        **_UNSUPPORTED,
                        "422": _PROBLEMS,
                    },
                },
            },
            "/api/config/check": {
                "post": {
                    "summary": "Validate a configuration without applying or saving it.",
                    "requestBody": _CONFIG_BODY,
                    "responses": {
                        "200": {
                            "description": "Valid.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"valid": {"type": "boolean"}},
                                    }
                                }
                            },
                        },
                        **_BAD_BODY,
                        **_REFUSED,
                        **_TOO_LARGE,
                        **_UNSUPPORTED,
                        "422": _PROBLEMS,
                    },
                }
            },
            "/api/peers/{peer_id}/{action}": {
                "post": {
                    "summary": "Approve a discovered peer for federation, or forget it.",
                    "parameters": [
                        {
                            "name": "peer_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        },
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": ["approve", "forget"]},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Done.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_REFUSED,
                        "404": _error("No such peer."),
                        "409": _error("Discovery is disabled."),
                    },
                }
            },
            "/api/homeassistant/remove": {
                "post": {
                    "summary": "Remove the appliance's device from Home Assistant (empty retained "
                    "discovery configs) until the next start; do this before "
                    "uninstalling the add-on.",
                    "responses": {
                        "200": {
                            "description": "Cleared.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["ok", "removed"],
                                        "properties": {
                                            "ok": {"type": "boolean"},
                                            "removed": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        **_REFUSED,
                        "409": _error("Discovery is off, or the bridge is not connected."),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.0 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_REFUSED,
                    },
                }
            },
            **_inspector_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "web.api_token from the configuration.",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "argentic_edge_session",
                    "description": "Browser session after logging in; mutating "
                    "requests also need the X-CSRF-Token header.",
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Problem": {
                    "type": "object",
                    "required": ["path", "expected"],
                    "properties": {
                        "path": {"type": "string"},
                        "value": {},
                        "expected": {"type": "string"},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["ok"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "reasons": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Status": _status_schema(),
                "ConfigView": {
                    "type": "object",
                    "required": ["path", "exists", "yaml", "document", "fields"],
                    "properties": {
                        "path": {"type": "string"},
                        "exists": {"type": "boolean"},
                        "yaml": {"type": "string"},
                        "document": {},
                        "fields": {"type": "array", "items": {"type": "object"}},
                        "problems": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Problem"},
                        },
                    },
                },
                "Saved": {
                    "type": "object",
                    "required": ["applied", "restarted", "path"],
                    "properties": {
                        "applied": {"type": "boolean"},
                        "restarted": {"type": "array", "items": {"type": "string"}},
                        "path": {"type": "string"},
                        "backup": {"type": "string", "nullable": True},
                        "web": {
                            "type": "object",
                            "nullable": True,
                            "description": "Where the web serves now (null: it is off); a "
                            "page follows a new port or scheme.",
                            "properties": {
                                "port": {"type": "integer"},
                                "https": {"type": "boolean"},
                                "ingress": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
        },
    }
