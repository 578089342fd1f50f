"""The configuration parser under generated input: never a traceback, always a named key."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from argentic_edge.config import ConfigError, EdgeConfig, parse_config, to_dict

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["${UNSET}", "${X:-1}", "auto", "both", "#", "a/+/b", "CERT_NONE", "0.0.0.0"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)

KNOWN: dict[str, list[str]] = {
    "messaging": [
        "protocol",
        "broker_address",
        "url",
        "port",
        "backend_port",
        "start_proxy",
        "proxy_mode",
        "high_water_mark",
        "linger",
        "connect_timeout",
        "topic_encoding",
        "client_id",
        "username",
        "password",
        "tls_params",
        "qos_levels",
    ],
    "bridge": ["enabled", "mqtt", "routes", "buffer", "max_payload", "ha_discovery"],
    "discovery": ["enabled", "interfaces", "federation"],
    "certificates": ["enabled", "certfile", "keyfile", "validity_days", "renewal_window"],
    "web": ["enabled", "host", "port", "password", "api_token"],
}

sections = st.fixed_dictionaries(
    {},
    optional={
        name: st.dictionaries(st.sampled_from(keys + ["bogus"]), values, max_size=5)
        for name, keys in KNOWN.items()
    }
    | {"node_name": values, "data_dir": values, "log_level": values, "topics": values},
)


def check_outcome(raw: Any) -> None:
    try:
        config = parse_config(raw, env={"X": "1"})
    except ConfigError as exc:
        assert exc.problems, "an error always says what is wrong"
        for problem in exc.problems:
            assert isinstance(problem.path, str) and problem.expected
        assert str(exc)
    else:
        assert isinstance(config, EdgeConfig)
        yaml.safe_dump(to_dict(config))


@given(sections)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_configurations_are_accepted_or_explained(raw: dict[str, Any]) -> None:
    check_outcome(raw)


@given(values)
@settings(max_examples=200, deadline=None)
def test_any_yaml_document_is_accepted_or_explained(raw: Any) -> None:
    check_outcome(raw)


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_arbitrary_yaml_text_never_crashes(text: str) -> None:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    check_outcome(raw)
