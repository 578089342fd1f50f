"""Schemathesis against the running appliance's own OpenAPI description.

The appliance runs as users run it (``argentic-edge run``, its own process, a free loopback
port); schemathesis reads ``/api/openapi.json`` from it and, per operation, sends requests that
follow the schema and requests that break it. Every answer must be free of server errors and
must match what the description promises (status codes, content types, bodies, headers).

A saved configuration is applied at once, so the bodies PUT to ``/api/config`` are pinned where
they would move the appliance: the bus and web stay on their free loopback ports and nothing
else starts (a fuzzed ``{}`` is a valid configuration, and its defaults are the well-known ports).
Every other part of a fuzzed body is left as generated; ``/api/config/check`` takes them raw.

The bus has a subscriber to everything while the fuzzing runs, as a bus with agents has: a
publish through the API sends as soon as it sees one, instead of waiting out its half second for
nobody on every example.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
import yaml
import zmq
from hypothesis import HealthCheck, settings

from argentic_edge.client.bus import publish
from tests.support.appliance import Process
from tests.support.config import TOKEN, write_yaml
from tests.support.web import web_document

EXAMPLES = 100
BEARER = {"Authorization": f"Bearer {TOKEN}"}
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    workdir = tmp_path_factory.mktemp("api-fuzz")
    document = web_document(workdir)
    path = write_yaml(workdir / "argentic-edge.yaml", document)
    with Process(workdir / "run", ("run", "--config", str(path))).start(
        wait_port=document["web"]["port"]
    ) as running:
        yield f"http://127.0.0.1:{document['web']['port']}", document
        assert running.process is not None and running.process.poll() is None, (
            f"the appliance died:\n{running.output()}"
        )
    assert "Traceback" not in running.output(), running.output()


@pytest.fixture(scope="module")
def subscribed_bus(appliance: tuple[str, dict[str, Any]]) -> Iterator[None]:
    """A subscriber to every topic on the appliance's bus, there before the first example."""
    _, document = appliance
    messaging = document["messaging"]
    context = zmq.Context()
    subscriber = context.socket(zmq.SUB)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(f"tcp://127.0.0.1:{messaging['backend_port']}")
    try:
        frontend = f"tcp://127.0.0.1:{messaging['port']}"
        assert publish(context, frontend, "fuzz/ready", b"", wait=10), "no subscription arrived"
        yield
    finally:
        subscriber.close(linger=0)
        context.term()


@pytest.fixture(scope="module")
def api_schema(appliance: tuple[str, dict[str, Any]]) -> Any:
    base_url, _ = appliance
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json", headers=BEARER)
    schema.config.update(base_url=base_url, headers=BEARER)
    return schema


def _pinned(document: Any, base: dict[str, Any]) -> Any:
    """``document`` with the sections that would move or start something held where ``base``
    keeps them; anything that is not a mapping there is left as it is (and is refused)."""
    if document is None:
        document = {}  # an empty file: every default
    if not isinstance(document, dict):
        return document
    document = dict(document)
    for section, keys in (
        ("messaging", ("broker_address", "port", "backend_port")),
        ("web", ("enabled", "host", "port", "password", "api_token")),
        ("bridge", ("enabled",)),
        ("discovery", ("enabled",)),
        ("certificates", ("enabled",)),
    ):
        value = document.get(section, {})
        if isinstance(value, dict):
            document[section] = {
                **value,
                **{key: base[section][key] for key in keys if key in base[section]},
            }
    document["data_dir"] = base["data_dir"]
    return document


def _pin_body(case: Any, base: dict[str, Any]) -> None:
    """Schemathesis sends a YAML body either as text or as a value it serializes itself."""
    if case.media_type in YAML_TYPES and isinstance(case.body, str):
        try:
            loaded = yaml.safe_load(case.body)
        except yaml.YAMLError:
            return  # not YAML at all: refused before anything is applied
        case.body = yaml.safe_dump(_pinned(loaded, base))
    elif case.media_type is not None:
        case.body = _pinned(case.body, base)


lazy_schema = schemathesis.pytest.from_fixture("api_schema")


@lazy_schema.parametrize()
@settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_the_api_never_fails_and_keeps_to_its_description(
    case: Any, appliance: tuple[str, dict[str, Any]], subscribed_bus: None
) -> None:
    base_url, document = appliance
    excluded = []
    if case.method in ("PUT", "POST") and case.path.startswith("/api/config"):
        # The description says "a mapping of sections"; what makes a configuration valid is
        # the configuration schema, whose answer (422 naming each problem) is described. So a
        # schema-valid body may be refused; everything else still holds.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    if case.path == "/api/inspector/stream":
        # The stream ends after ``seconds`` (up to an hour): held at the shortest it allows.
        case.query = {**(case.query or {}), "seconds": 0.1}
        excluded.append(schemathesis.checks.negative_data_rejection)
    if case.method == "PUT":
        generated = case.body
        _pin_body(case, document)
        if case.body != generated:
            # Pinning can turn a body generated to break the schema into a valid one, which
            # is then rightly accepted; schemathesis would call that accepting bad data.
            excluded.append(schemathesis.checks.negative_data_rejection)
    case.call_and_validate(base_url=base_url, headers=BEARER, excluded_checks=excluded)


def test_the_description_is_served_and_still_valid(appliance: tuple[str, dict[str, Any]]) -> None:
    """After the fuzzing, the appliance still answers and still describes itself."""
    base_url, _ = appliance
    answer = requests.get(f"{base_url}/api/openapi.json", headers=BEARER, timeout=5)
    assert answer.status_code == 200
    assert answer.json()["openapi"].startswith("3.0")
    assert requests.get(f"{base_url}/healthz", timeout=5).json()["ok"] is True
