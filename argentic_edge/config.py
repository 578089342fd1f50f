"""EdgeConfig: the one configuration every service is built from.

The file format is Argentic's messaging configuration plus our own sections (DESIGN.md,
"Configuration"). Parsing happens once, at the edge: the YAML is turned into frozen dataclasses,
every problem is collected (key path, value, what was expected) and reported together, and the
services downstream trust the values they are given.

The dataclasses are the schema: a field's type says what a value may be, its default is the
documented default, and its metadata adds aliases (Argentic's code says ``url`` and ``user``),
range checks and whether it is a secret. One generic builder walks them, so a new key is one line.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import difflib
import ipaddress
import math
import os
import re
import reprlib
import socket
import ssl
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from argentic_edge.errors import EdgeError
from argentic_edge.storage import saved_config_path
from argentic_edge.topics import (
    TopicError,
    can_share_a_topic,
    has_mqtt_forbidden_character,
    parse_filter,
    validate_topic_name,
)

MASK = "********"
MAX_VALIDITY_DAYS = 397  # what browsers and Apple clients accept for a TLS server certificate
# A CURVE public key in Z85 text form: 40 characters of ZeroMQ's Z85 alphabet.
Z85_KEY_PATTERN = r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}"


class Secret:
    """A string that never shows itself: repr, str, logs and dumps all print the mask.

    Only code that really needs the value (the MQTT connect, the password check) calls
    ``reveal()``, which makes every use of a secret easy to find.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _short_repr() -> reprlib.Repr:
    """repr() with bounds: a problem's value can be a huge list (it is shown, never walked)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict = 3, 8, 8
    short.maxstring = short.maxother = 200
    return short


_SHORT = _short_repr()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration, phrased so a user can fix it."""

    path: str
    value: Any
    expected: str

    def __str__(self) -> str:
        """``path: value — expected``; without the value when there is none to show (a file
        that does not parse, a missing key): "None —" would read as noise."""
        where = self.path or "<top>"
        if self.value is None:
            return f"{where}: {self.expected}"
        shown = MASK if isinstance(self.value, Secret) else _SHORT.repr(self.value)
        return f"{where}: {shown} — {self.expected}"


class ConfigError(EdgeError):
    """Raised with every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


# --- field helpers -------------------------------------------------------------------------

Check = Callable[[Any], str | None]


def _opt(
    default: Any = None,
    *,
    check: Check | None = None,
    aliases: tuple[str, ...] = (),
    doc: str = "",
    one_or_many: bool = False,
) -> Any:
    """A dataclass field with the validation metadata the builder reads; ``one_or_many``: a
    list field that also takes one value written alone (``broker_address: kafka-1``)."""
    meta = {"check": check, "aliases": aliases, "doc": doc, "one_or_many": one_or_many}
    if isinstance(default, types.MappingProxyType):
        return field(default_factory=lambda: default, metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in a frozen config")
    return field(default=default, metadata=meta)


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "expected a TCP port from 1 to 65535"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "expected a number >= 0"


def _positive(value: float) -> str | None:
    return None if value > 0 else "expected a number > 0"


def _days(high: float) -> Check:
    """More than 0 days, at most ``high``: whole days in a file (the field is an int); code that
    builds certificates may ask for less (tests make seconds-long ones)."""

    def check(value: float) -> str | None:
        return None if 0 < value <= high else f"expected a number of days from 1 to {high}"

    return check


def _field_problem(spec: dataclasses.Field[Any], value: Any) -> str | None:
    check = spec.metadata.get("check")
    return check(value) if check and value is not None else None


def field_problems(section: type, values: Mapping[str, Any], path: str) -> list[Problem]:
    """The range checks of ``section``'s fields applied to values given in code instead of a
    file (the certificate files take their settings as arguments): one place for the bounds."""
    return [
        Problem(f"{path}.{spec.name}", values[spec.name], message)
        for spec in dataclasses.fields(section)
        if spec.name in values and (message := _field_problem(spec, values[spec.name]))
    ]


def _between(low: float, high: float) -> Check:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"expected a number from {low} to {high}"

    return check


INT_MAX = 2**31 - 1  # libzmq's int socket options; Python ints beyond it crash setsockopt


def _zmq_int(low: int) -> Check:
    """A libzmq int option: from ``low`` to 2^31-1 (a larger one makes ``run`` crash)."""
    return _between(low, INT_MAX)


def _high_water_mark(value: int) -> str | None:
    if 1 <= value <= INT_MAX:
        return None
    if value == 0:
        return (
            "expected a queue length from 1 to 2147483647 messages; 0 means unlimited, "
            "and one subscriber that never reads would then grow memory without bound"
        )
    return "expected a queue length from 1 to 2147483647 messages"


def _host(value: str) -> str | None:
    if value in ("*", "0.0.0.0", "::"):
        return None
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9\-_.]{0,252})", value) and ".." not in value:
        return None
    return "expected a host name or an IP address"


def _encoding(value: str) -> str | None:
    """A text codec that keeps ASCII as ASCII: a frame is split at its first space byte and
    subscriptions are byte prefixes, so ``base64``, ``rot13`` or ``utf-16`` would crash ``run``
    or match nothing."""
    expected = "expected a Python text codec that keeps ASCII as it is, such as utf-8"
    try:
        info = codecs.lookup(value)
    except LookupError:
        return expected
    sample = "agent/status/info {}"
    if not getattr(info, "_is_text_encoding", True):
        return expected
    try:
        if sample.encode(info.name) != sample.encode("ascii"):
            return expected
    except (UnicodeError, LookupError):
        return expected
    return None


def _ciphers(value: str) -> str | None:
    try:
        ssl.create_default_context().set_ciphers(value)
        return None
    except ssl.SSLError:
        return "expected an OpenSSL cipher list such as HIGH:!aNULL:!MD5"


def _topic_filter(value: str) -> str | None:
    try:
        parse_filter(value)
        return None
    except TopicError as exc:
        return f"expected an MQTT topic filter ({exc})"


def _topic_prefix(value: str) -> str | None:
    if value == "":
        return None
    try:
        validate_topic_name(value)
        return None
    except TopicError as exc:
        return f"expected a topic prefix without wildcards ({exc})"


def _peer_refs(values: tuple[str, ...]) -> str | None:
    for index, value in enumerate(values):
        if not (re.fullmatch(r"[0-9a-f]{32}", value) or re.fullmatch(Z85_KEY_PATTERN, value)):
            return (
                f"item {index} is neither a peer id (32 hex digits, see `argentic-edge "
                "peers`) nor a CURVE public key (40 Z85 characters)"
            )
    return None


def _data_dir(value: str) -> str | None:
    if ".." in Path(value).parts:
        return "expected a directory without '..' components (write the path it means)"
    return None


def _node_name(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-_]{0,62}", value):
        return None
    return "expected 1-63 letters, digits, '-' or '_' (it is used in topics and mDNS names)"


# --- the schema ----------------------------------------------------------------------------

CertReqs = Literal["CERT_NONE", "CERT_OPTIONAL", "CERT_REQUIRED"]
TlsVersion = Literal[
    "PROTOCOL_TLS",
    "PROTOCOL_TLS_CLIENT",
    "PROTOCOL_TLSv1",
    "PROTOCOL_TLSv1_1",
    "PROTOCOL_TLSv1_2",
    "PROTOCOL_TLSv1_3",
]
Qos = Literal[0, 1, 2]


@dataclass(frozen=True)
class TlsParams:
    """The seed's ``tls_params``: how the bridge authenticates the broker and itself."""

    ca_certs: str | None = _opt(None, doc="CA certificate file")
    certfile: str | None = _opt(None, doc="client certificate (mutual TLS)")
    keyfile: str | None = _opt(None, doc="client private key (mutual TLS)")
    cert_reqs: CertReqs = _opt("CERT_REQUIRED")
    tls_version: TlsVersion = _opt("PROTOCOL_TLS")
    ciphers: str | None = _opt(None, check=_ciphers)


@dataclass(frozen=True)
class QosLevels:
    """QoS per message category (``qos: auto`` routes); categories in topics.CATEGORIES."""

    tool_calls: Qos = _opt(1)
    responses: Qos = _opt(1)
    status: Qos = _opt(0)
    logs: Qos = _opt(0)
    tool_registry: Qos = _opt(1)


@dataclass(frozen=True)
class RetainMessages:
    """Retain flag per message category (``retain: auto`` routes)."""

    status: bool = _opt(False)
    tool_registry: bool = _opt(False)
    responses: bool = _opt(False)
    tool_calls: bool = _opt(False)
    logs: bool = _opt(False)


@dataclass(frozen=True)
class BusConfig:
    """The local ZeroMQ bus: the seed's ZeroMQ keys, verbatim."""

    protocol: Literal["zeromq"] = _opt("zeromq")
    broker_address: str = _opt(
        "0.0.0.0",
        check=_host,
        aliases=("url",),
        doc="bind address (embedded) or the proxy's host (external)",
    )
    port: int = _opt(5555, check=_port, doc="frontend (XSUB): publishers connect here")
    backend_port: int = _opt(5556, check=_port, doc="backend (XPUB): subscribers connect here")
    start_proxy: bool = _opt(True)
    proxy_mode: Literal["embedded", "external"] = _opt("embedded")
    high_water_mark: int = _opt(
        1000, check=_high_water_mark, doc="messages queued per connection and direction"
    )
    max_message_size: int = _opt(
        1024 * 1024, check=_zmq_int(1), doc="bytes; a larger message from the network is refused"
    )
    linger: int = _opt(1000, check=_between(-1, 3_600_000))
    connect_timeout: int = _opt(5000, check=_zmq_int(0))
    topic_encoding: str = _opt("utf-8", check=_encoding)


@dataclass(frozen=True)
class MqttConfig:
    """The uplink broker: the seed's MQTT keys, verbatim."""

    protocol: Literal["mqtt"] = _opt("mqtt")
    broker_address: str | None = _opt(
        None, check=_host, aliases=("url",), doc="unset: no broker, the bridge waits"
    )
    port: int = _opt(1883, check=_port)
    client_id: str | None = _opt(None, doc="unset: argentic-edge-<node_name>")
    keepalive: int = _opt(60, check=_between(0, 65535))
    username: str | None = _opt(None, aliases=("user",))
    password: Secret | None = _opt(None)
    tls_params: TlsParams | None = _opt(None)
    qos_levels: QosLevels = _opt(QosLevels())
    retain_messages: RetainMessages = _opt(RetainMessages())
    clean_session: bool = _opt(False, doc="false: a persistent session keeps QoS>=1 messages")
    connect_retry_delay: float = _opt(5.0, check=_positive)
    max_reconnect_attempts: int = _opt(0, check=_non_negative, doc="0: never give up")


def _bootstrap_servers(values: tuple[str, ...]) -> str | None:
    """Each entry ``host`` or ``host:port`` (``[v6]:port`` for an IPv6 address with a port)."""
    if not values:
        return "expected a host, or a list of bootstrap servers (host or host:port)"
    for index, value in enumerate(values):
        host, port = split_server(value, 1)
        if _host(host) is not None or not 1 <= port <= 65535:
            return f"item {index} ({value!r}) is not host or host:port with a port from 1 to 65535"
    return None


def split_server(value: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` as (host, port); a port that is not a number comes back as 0."""
    if value.startswith("[") and "]" in value:
        host, _, rest = value[1:].partition("]")
        text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
    else:
        host, text = value, ""
    if not text:
        return host, default_port
    return host, int(text) if text.isdigit() else 0


def _distinct_map(value: KafkaTopicMap) -> str | None:
    if value.separator == value.escape:
        return "separator and escape must be different characters"
    return None


KafkaPunctuation = Literal[".", "_", "-"]


@dataclass(frozen=True)
class KafkaTopicMap:
    """How bus topics become Kafka topic names (docs/kafka.md, "Topic names")."""

    separator: KafkaPunctuation = _opt(
        ".", doc="what '/' becomes: agent/tools/call -> agent.tools.call"
    )
    escape: KafkaPunctuation = _opt("_", doc="starts an escape (_2E is a literal '.', _20 a space)")


@dataclass(frozen=True)
class KafkaConfig:
    """A Kafka uplink: the guide's keys (broker_address, port, username, password, tls_params)
    and what a Kafka client needs beyond them."""

    protocol: Literal["kafka"] = _opt("kafka")
    broker_address: tuple[str, ...] | None = _opt(
        None,
        check=_bootstrap_servers,
        aliases=("url", "bootstrap_servers"),
        one_or_many=True,
        doc="a host, or a list of bootstrap servers (host or host:port); unset: the uplink waits",
    )
    port: int = _opt(9092, check=_port, doc="for bootstrap servers written without a port")
    client_id: str | None = _opt(None, doc="unset: argentic-edge-<node_name>-<uplink name>")
    username: str | None = _opt(None, aliases=("user",), doc="SASL user; unset: no SASL")
    password: Secret | None = _opt(None, doc="SASL password")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = _opt(
        "PLAIN", doc="how username and password are checked"
    )
    tls_params: TlsParams | None = _opt(None, doc="set: TLS to the brokers (SASL_SSL with a user)")
    group_id: str | None = _opt(
        None, doc="consumer group; unset: argentic-edge-<node id>, the same after every restart"
    )
    auto_offset_reset: Literal["latest", "earliest"] = _opt(
        "latest", doc="where a new group starts reading: latest skips what is already there"
    )
    topic_map: KafkaTopicMap = _opt(KafkaTopicMap(), check=_distinct_map)
    linger_ms: int = _opt(5, check=_between(0, 60_000), doc="wait this long to fill a batch")
    batch_size: int = _opt(
        64 * 1024, check=_between(1024, 64 * 1024 * 1024), doc="bytes per batch and partition"
    )
    request_timeout: float = _opt(
        30.0,
        check=_between(1, 3600),
        doc="seconds; a broker silent this long is treated as lost and the records go again",
    )
    metadata_refresh: float = _opt(
        10.0, check=_between(1, 3600), doc="seconds between looks for new topics the routes match"
    )
    fetch_max_wait_ms: int = _opt(
        100,
        check=_between(1, 60_000),
        doc="longest wait of one fetch for new records (a broker answers sooner when they come)",
    )
    qos_levels: QosLevels = _opt(QosLevels())
    connect_retry_delay: float = _opt(5.0, check=_positive)

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as ``host:port``, ``port`` filled in where one was not written."""
        return [
            "{}:{}".format(*split_server(server, self.port)) for server in self.broker_address or ()
        ]


def _key_name(value: str) -> str | None:
    if value and " " not in value and "\x00" not in value:
        return None
    return "expected a Redis key name without spaces"


@dataclass(frozen=True)
class RedisConfig:
    """A Redis uplink: Argentic's Redis keys, plus how the messages are carried."""

    protocol: Literal["redis"] = _opt("redis")
    broker_address: str | None = _opt(
        None, check=_host, aliases=("url",), doc="unset: no server, the uplink waits"
    )
    port: int = _opt(6379, check=_port, doc="6380 or what the server says for TLS")
    username: str | None = _opt(None, aliases=("user",), doc="Redis 6 ACL user; unset: default")
    password: Secret | None = _opt(None, doc="AUTH password (of the ACL user if one is set)")
    db: int = _opt(0, check=_between(0, 65535), doc="database number (SELECT)")
    tls_params: TlsParams | None = _opt(None, doc="set: TLS (rediss://)")
    mode: Literal["pubsub", "streams"] = _opt(
        "pubsub", doc="pubsub: Argentic's wire (PUBLISH); streams: durable XADD/XREADGROUP"
    )
    stream: str | None = _opt(
        None, check=_key_name, doc="streams: one stream for every topic; unset: one per topic"
    )
    stream_maxlen: int = _opt(100_000, check=_positive, doc="streams: MAXLEN ~ of each stream")
    group: str | None = _opt(
        None, check=_key_name, doc="streams: consumer group; unset: argentic-edge-<node id>"
    )
    connect_retry_delay: float = _opt(5.0, check=_positive, doc="seconds; doubles up to 60")
    max_reconnect_attempts: int = _opt(0, check=_non_negative, doc="0: never give up")


@dataclass(frozen=True)
class RabbitConfig:
    """A RabbitMQ uplink: Argentic's RabbitMQ keys, plus which exchange convention to speak."""

    protocol: Literal["rabbitmq"] = _opt("rabbitmq")
    broker_address: str | None = _opt(
        None, check=_host, aliases=("url",), doc="unset: no broker, the uplink waits"
    )
    port: int = _opt(5672, check=_port, doc="5671 for amqps")
    username: str = _opt("guest", aliases=("user",), doc="guest works only from localhost")
    password: Secret = _opt(Secret("guest"), doc="the user's password")
    virtualhost: str = _opt("/", doc="the vhost; Argentic's driver adds a leading / itself")
    tls_params: TlsParams | None = _opt(None, doc="set: TLS (amqps://)")
    exchange_mode: Literal["argentic", "amq.topic"] = _opt(
        "argentic",
        doc="argentic: a fanout exchange per topic, as Argentic's driver; amq.topic: RabbitMQ's "
        "MQTT plugin convention",
    )
    connect_retry_delay: float = _opt(5.0, check=_positive, doc="seconds; doubles up to 60")
    max_reconnect_attempts: int = _opt(0, check=_non_negative, doc="0: never give up")


@dataclass(frozen=True)
class Route:
    """A mosquitto-bridge style route: the local topic is local_prefix + topic, the remote one
    remote_prefix + topic. ``in`` is broker to bus, ``out`` bus to broker."""

    topic: str = _opt("#", check=_topic_filter)
    direction: Literal["in", "out", "both"] = _opt("both")
    qos: Literal[0, 1, 2, "auto"] = _opt("auto")
    retain: Literal[True, False, "auto"] = _opt("auto")
    local_prefix: str = _opt("", check=_topic_prefix)
    remote_prefix: str = _opt("", check=_topic_prefix)


DEFAULT_ROUTES: tuple[Route, ...] = (
    Route(topic="agent/#"),
    Route(topic="tools/#"),
    Route(topic="supervisor/#"),
    Route(topic="_ping/#"),
    Route(topic="logs/#", direction="out"),
)


@dataclass(frozen=True)
class BufferConfig:
    """Bound for bus-to-broker messages held while the broker is away (drop-oldest)."""

    max_messages: int = _opt(10_000, check=_positive)
    max_bytes: int = _opt(16 * 1024 * 1024, check=_positive)
    max_age: float = _opt(86_400.0, check=_positive, doc="seconds; older messages are dropped")
    durable: bool = _opt(True, doc="keep waiting messages on disk under data_dir")


@dataclass(frozen=True)
class BridgeConfig:
    enabled: bool = _opt(True)
    mqtt: MqttConfig = _opt(MqttConfig())
    routes: tuple[Route, ...] = _opt(DEFAULT_ROUTES)
    buffer: BufferConfig = _opt(BufferConfig())
    max_payload: int = _opt(1024 * 1024, check=_positive, doc="larger payloads are dropped")
    ha_discovery: bool = _opt(True, doc="announce the appliance to Home Assistant over MQTT")
    ha_discovery_prefix: str = _opt("homeassistant", check=_topic_prefix)


def _uplink_name(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9\-_]{0,62}", value):
        return None
    return "expected 1-63 letters, digits, '-' or '_' (it names the uplink's service and metrics)"


@dataclass(frozen=True)
class UplinkConfig:
    """One uplink: a broker of some protocol, joined to the bus by routes.

    In the file an uplink is one flat mapping; ``link`` holds the protocol's own keys written
    beside the common ones (for MQTT the keys of ``bridge.mqtt``), as a protocol's dataclass
    from ``UPLINK_PROTOCOLS``. ``notes`` are what reading the file decided that a user should
    hear about (the agent's client id not taken...): logged when the uplink starts, printed by
    check-config.
    """

    name: str = _opt("mqtt", check=_uplink_name, doc="unique; default: the protocol")
    protocol: str = _opt("mqtt", doc="one of the protocols in the table below")
    link: Any = _opt(MqttConfig(), doc="the protocol's own keys, written beside these")
    routes: tuple[Route, ...] = _opt(DEFAULT_ROUTES)
    buffer: BufferConfig = _opt(BufferConfig())
    max_payload: int = _opt(1024 * 1024, check=_positive, doc="larger payloads are dropped")
    notes: tuple[str, ...] = field(default=(), compare=False, metadata={"derived": True})
    # Where the file wrote it: "bridge" (or messaging:), "uplinks[2]"; for messages that name keys
    source: str = field(default="uplinks", compare=False, metadata={"derived": True})

    @property
    def where(self) -> str:
        """``protocol://host:port`` of the broker, for loop checks and messages."""
        if isinstance(self.link, KafkaConfig):  # bootstrap servers, each host or host:port
            return f"{self.protocol}://" + ",".join(self.link.servers)
        host = getattr(self.link, "broker_address", None)
        port = getattr(self.link, "port", "")
        return f"{self.protocol}://{host}:{port}"


# Protocol name -> its keys' dataclass; each also has a branch in bridge/protocols.py's factory.
UPLINK_PROTOCOLS: dict[str, type] = {
    "mqtt": MqttConfig,
    "kafka": KafkaConfig,
    "redis": RedisConfig,
    "rabbitmq": RabbitConfig,
}
UPLINK_KEYS = frozenset({"name", "protocol", "routes", "buffer", "max_payload"})
BRIDGE_UPLINK = "mqtt"  # the name of the uplink that bridge: and messaging: {protocol: mqtt} mean
BRIDGE_PATH = "bridge"  # UplinkConfig.source of that uplink


@dataclass(frozen=True)
class FederationConfig:
    enabled: bool = _opt(True)
    trust: Literal["approved", "open"] = _opt("approved")
    trusted_peers: tuple[str, ...] = _opt((), check=_peer_refs, doc="peer ids or CURVE public keys")
    export_port: int = _opt(5557, check=_port)


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = _opt(True)
    interfaces: tuple[str, ...] = _opt((), doc="empty: every LAN interface")
    liveness_interval: float = _opt(
        3.0, check=_between(1, 60), doc="seconds between checks; silent 3 intervals = lost"
    )
    max_peers: int = _opt(64, check=_between(1, 4096), doc="peers remembered at most")
    federation: FederationConfig = _opt(FederationConfig())


@dataclass(frozen=True)
class CertificatesConfig:
    enabled: bool = _opt(True)
    certfile: str | None = _opt(None, doc="bring your own, e.g. /ssl/fullchain.pem")
    keyfile: str | None = _opt(None)
    validity_days: int = _opt(MAX_VALIDITY_DAYS, check=_days(MAX_VALIDITY_DAYS))
    ca_validity_days: int = _opt(3650, check=_between(1, 36500))
    renewal_window: float = _opt(
        1 / 3, check=_between(0.01, 0.99), doc="renew in the last fraction of a certificate's life"
    )
    check_interval: float = _opt(3600.0, check=_positive)


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = _opt(True)
    host: str = _opt("0.0.0.0", check=_host)
    port: int = _opt(8099, check=_port)
    password: Secret | None = _opt(None, doc="unset: generated at first start, logged once")
    api_token: Secret | None = _opt(None)
    ingress: bool = _opt(False, doc="Home Assistant ingress mode (set by --addon)")


@dataclass(frozen=True)
class EdgeConfig:
    node_name: str = _opt("", check=_node_name, doc="default: the host name")
    data_dir: str = _opt("", check=_data_dir, doc="default: $XDG_DATA_HOME/argentic-edge")
    log_level: Literal["debug", "info", "warning", "error"] = _opt("info")
    messaging: BusConfig = _opt(BusConfig())
    bridge: BridgeConfig = _opt(BridgeConfig())
    discovery: DiscoveryConfig = _opt(DiscoveryConfig())
    certificates: CertificatesConfig = _opt(CertificatesConfig())
    web: WebConfig = _opt(WebConfig())
    topics: Mapping[str, Any] = _opt(
        types.MappingProxyType({}), doc="Argentic's own topics: section, kept as read"
    )
    uplinks: tuple[UplinkConfig, ...] = _opt(
        (), doc="default: one uplink from bridge: (or messaging: with protocol mqtt)"
    )

    @property
    def mqtt_client_id(self) -> str:
        """The client id of the first MQTT uplink (Home Assistant's, ``ha-remove``'s base)."""
        first = self.first_mqtt_uplink
        if first is None:
            return f"argentic-edge-{self.node_name}"
        return uplink_client_id(first, self.node_name)

    @property
    def first_mqtt_uplink(self) -> UplinkConfig | None:
        """Home Assistant discovery goes through this one (docs/uplinks.md)."""
        return next((u for u in self.uplinks if u.protocol == "mqtt"), None)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def uplink_client_id(uplink: UplinkConfig, node_name: str) -> str:
    """The client id the appliance uses on an uplink's broker: the one configured for the
    appliance, else derived from the node (the ``mqtt`` uplink keeps today's
    ``argentic-edge-<node>``, so its persistent session is found again)."""
    configured = getattr(uplink.link, "client_id", None)
    if configured:
        return str(configured)
    if uplink.name == BRIDGE_UPLINK:
        return f"argentic-edge-{node_name}"
    return f"argentic-edge-{node_name}-{uplink.name}"


# Keys Argentic's agent-side code puts in a messaging block that mean nothing to the appliance:
# the client ids of its agent (client_id), its CLI (cli_client_id) and its tool services
# (tool_client_id), and the agent's keepalive and MQTT version (argentic 0.16.6's main.py,
# cli_client.py and services/ read them).
ARGENTIC_CLIENT_KEYS = frozenset(
    {"client_id", "cli_client_id", "tool_client_id", "keepalive", "version"}
)
# Top-level sections of a whole Argentic config.yaml that are not ours and are left alone.
ARGENTIC_SECTIONS = frozenset({"llm", "agent", "tools", "logging", "rag", "supervisor", "models"})

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
# Names of environment variables that hold secrets (the Supervisor's token among them): only a
# secret field may reference them (SECURITY.md, "Bad input on every way in").
SECRET_VARIABLE = re.compile(r"(?:^|_)(?:TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY)(?:_|$)", re.I)
SECRET_FIELDS = ("an uplink's password", "web.password", "web.api_token")


# --- building --------------------------------------------------------------------------------


class _Builder:
    """Walks the dataclass schema over raw YAML, collecting problems instead of stopping."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[Problem] = []
        self.written: dict[str, str] = {}  # key path -> text as written, where ${VAR} expanded

    def fail(self, path: str, value: Any, expected: str) -> None:
        """Record a problem; at a key whose ``${VAR}`` was expanded, with the text as written."""
        written = self.written.get(path)
        if written is not None:
            value = Secret(written) if isinstance(value, Secret) else written
        self.problems.append(Problem(path, value, expected))

    def as_written(self, path: str, value: str) -> str:
        """The value at ``path`` as the document wrote it (for problems about combined keys)."""
        return self.written.get(path, value)

    def substitute(self, text: str, path: str, *, secret: bool = False) -> str:
        """``${VAR}`` and ``${VAR:-default}`` expanded from the environment.

        A variable whose name marks it as a secret (``SUPERVISOR_TOKEN``, ``*_PASSWORD``…) is
        expanded only into a secret field: anywhere else its value would be shown (check-config
        prints the configuration, the page shows it). Problems always name the text as written.
        """

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if not secret and SECRET_VARIABLE.search(name):
                self.fail(
                    path,
                    text,
                    f"environment variable {name} holds a secret: it may only "
                    f"be used in a secret field ({', '.join(SECRET_FIELDS)})",
                )
                return ""
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.fail(
                path, text, f"environment variable {name} is not set (use ${{{name}:-default}})"
            )
            return ""

        return _ENV_PATTERN.sub(replace, text)

    def build(
        self,
        cls: type,
        raw: Any,
        path: str,
        *,
        ignore: frozenset[str] = frozenset(),
        ignore_unknown: bool = False,
    ) -> Any:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            self.fail(path, raw, f"expected a mapping of {cls.__name__} keys")
            return cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        lookup = {name: name for name in fields}
        for f in fields.values():
            for alias in f.metadata.get("aliases", ()):
                lookup[alias] = f.name
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, value in raw.items():
            key_path = f"{path}.{key}" if path else str(key)
            name = lookup.get(key) if isinstance(key, str) else None
            if name is None:
                if key in ignore or ignore_unknown:
                    continue
                close = difflib.get_close_matches(str(key), list(lookup), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(key_path, key, f"unknown key{hint}; expected one of {sorted(fields)}")
                continue
            if name in values:
                self.fail(key_path, value, f"{name!r} is given twice (once under an alias)")
                continue
            if fields[name].metadata.get("one_or_many") and not isinstance(
                value, (list, type(None))
            ):
                value = [value]
            before = len(self.problems)
            converted = self.convert(hints[name], value, key_path)
            if len(self.problems) > before:
                continue
            message = _field_problem(fields[name], converted)
            if message:
                self.fail(key_path, value, message)
                continue
            values[name] = converted
        return cls(**values)

    def convert(self, hint: Any, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            return self._convert(hint, value, path)
        expanded = self.substitute(value, path, secret=Secret in (hint, *typing.get_args(hint)))
        if expanded != value:  # the expanded text is never shown, even in a problem
            self.written[path] = value
        if "\x00" in expanded:  # no name, path, codec or cipher list holds one; C APIs refuse it
            self.fail(path, value, "expected text without NUL characters")
            return None
        return self._convert(hint, expanded, path)

    def _convert(self, hint: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            options = [arg for arg in args if arg is not type(None)]
            if (value is None or value == "") and type(None) in args:
                return None
            return self._convert(options[0], value, path) if len(options) == 1 else value
        if origin is Literal:
            for allowed in args:
                if value == allowed and type(value) is type(allowed):
                    return allowed
                if isinstance(value, str) and str(allowed).lower() == value.lower():
                    return allowed
            shown = " | ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in args)
            self.fail(path, value, f"expected one of: {shown}")
            return None
        if origin is tuple:
            if value is None:
                return ()
            if not isinstance(value, list):
                self.fail(path, value, "expected a list")
                return ()
            return tuple(
                self.convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)
            )
        if origin is Mapping or hint is Mapping:
            if not isinstance(value, Mapping):
                self.fail(path, value, "expected a mapping")
                return types.MappingProxyType({})
            return types.MappingProxyType(dict(value))
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.build(hint, value, path)
        return self.scalar(hint, value, path)

    def scalar(self, hint: Any, value: Any, path: str) -> Any:
        if hint is Secret:
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                return Secret(str(value))
            self.fail(path, Secret(repr(value)), "expected a string")
            return None
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in (
                "true",
                "false",
                "yes",
                "no",
                "on",
                "off",
            ):
                return value.lower() in ("true", "yes", "on")
            self.fail(path, value, "expected true or false")
            return None
        if hint is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                return int(value)
            self.fail(path, value, "expected a whole number")
            return None
        if hint is float:
            number: float | None = None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                number = float(value)
            elif isinstance(value, str):
                with contextlib.suppress(ValueError):
                    number = float(value)
            if number is not None and math.isfinite(number):
                return number
            self.fail(path, value, "expected a finite number")
            return None
        if hint is str:
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            self.fail(path, value, "expected a string")
            return None
        raise TypeError(f"config schema uses an unsupported type {hint!r} at {path}")


def parse_config(raw: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> EdgeConfig:
    """Validate a raw mapping (a parsed YAML document) into an EdgeConfig, or raise ConfigError."""
    builder = _Builder(os.environ if env is None else env)
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError([Problem("", raw, "expected a mapping of configuration sections")])
    ours = {f.name for f in dataclasses.fields(EdgeConfig)}
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ours:
            top[key] = value
        elif isinstance(key, str) and key not in ARGENTIC_SECTIONS:
            close = difflib.get_close_matches(key, sorted(ours), n=1, cutoff=0.8)
            if close:
                builder.fail(key, key, f"unknown section (did you mean {close[0]!r}?)")

    messaging = top.pop("messaging", None)
    uplink = None
    if isinstance(messaging, Mapping):
        written = str(messaging.get("protocol", "zeromq"))
        protocol = builder.substitute(written, "messaging.protocol")
        if protocol == "mqtt":
            uplink, messaging = messaging, None
        elif protocol != "zeromq":
            builder.fail(
                "messaging.protocol",
                written,
                "expected zeromq (the local bus) or mqtt (the uplink the bridge uses)",
            )
            messaging = None
    bridge_raw = top.get("bridge")
    if isinstance(bridge_raw, Mapping) and "mqtt" in bridge_raw and bridge_raw["mqtt"] is None:
        # Every other empty section means its defaults; this one would mean "no broker", a
        # bridge that waits forever while /healthz says ok. Leaving the key out says that.
        builder.fail(
            "bridge.mqtt",
            None,
            "an empty section: give the broker (bridge.mqtt.broker_address, ...), leave "
            "the key out (the add-on then uses the Supervisor's broker), or turn the "
            "bridge off with bridge.enabled: false",
        )
    uplinks_raw = top.pop("uplinks", None)
    config: EdgeConfig = builder.build(EdgeConfig, top, "", ignore_unknown=True)
    bus = builder.build(BusConfig, messaging, "messaging", ignore=ARGENTIC_CLIENT_KEYS)
    bridge = config.bridge
    if uplink is not None:
        if isinstance(top.get("bridge"), Mapping) and "mqtt" in top["bridge"]:
            builder.fail(
                "messaging",
                "mqtt",
                "an MQTT uplink is given both as messaging: and as bridge.mqtt:; keep one",
            )
        else:
            mqtt = builder.build(
                MqttConfig,
                uplink,
                "messaging",
                ignore=ARGENTIC_CLIENT_KEYS - {"client_id", "keepalive"},
            )
            bridge = dataclasses.replace(bridge, mqtt=mqtt)
    _cross_checks(builder, bus, config)
    uplinks = _uplinks(builder, uplinks_raw, bridge, top, agent_form=uplink is not None)
    if builder.problems:
        raise ConfigError(builder.problems)
    return dataclasses.replace(
        config,
        messaging=bus,
        bridge=bridge,
        uplinks=uplinks,
        node_name=config.node_name or default_node_name(),
        data_dir=config.data_dir or str(default_data_dir()),
    )


BRIDGE_UPLINK_KEYS = ("mqtt", "routes", "buffer", "max_payload")  # bridge: keys of its uplink


def _uplinks(
    builder: _Builder,
    raw: Any,
    bridge: BridgeConfig,
    top: Mapping[str, Any],
    *,
    agent_form: bool,
) -> tuple[UplinkConfig, ...]:
    """The effective list: ``bridge:`` (or ``messaging: {protocol: mqtt}``) as the uplink
    named ``mqtt``, then the ``uplinks:`` entries; names unique, no two uplinks in a loop.

    Without ``uplinks:`` the bridge's uplink is there even with nothing written (it waits
    for a broker, which the add-on fills in); beside ``uplinks:`` only when ``bridge:`` or
    ``messaging:`` gives it something.
    """
    listed: list[tuple[str, UplinkConfig]] = []
    bridge_raw = top.get("bridge")
    gives_bridge = agent_form or (
        isinstance(bridge_raw, Mapping) and any(key in bridge_raw for key in BRIDGE_UPLINK_KEYS)
    )
    if bridge.enabled and (raw is None or gives_bridge):
        listed.append((BRIDGE_PATH, _bridge_uplink(bridge, agent_form)))
    if raw is not None and not isinstance(raw, list):
        builder.fail("uplinks", raw, "expected a list of uplinks (each a mapping with protocol:)")
        raw = []
    for index, item in enumerate(raw or ()):
        path = f"uplinks[{index}]"
        before = len(builder.problems)
        uplink = _uplink(builder, item, path)
        if uplink is not None and len(builder.problems) == before:
            _route_checks(builder, uplink.routes, f"{path}.routes")
            _tls_pair_check(builder, uplink.link, path)
            listed.append((path, dataclasses.replace(uplink, source=path)))
    names: dict[str, str] = {}
    for path, uplink in listed:
        taken = names.setdefault(uplink.name, path)
        if taken != path:
            builder.fail(
                f"{path}.name",
                uplink.name,
                f"the name is taken by {_described(taken)}; give each uplink its own name",
            )
    _loop_checks(builder, listed)
    return tuple(uplink for _, uplink in listed)


def _described(path: str) -> str:
    return "the uplink bridge: configures" if path == BRIDGE_PATH else path


def _bridge_uplink(bridge: BridgeConfig, agent_form: bool) -> UplinkConfig:
    """``bridge:`` as an uplink. The ``client_id`` of a top-level ``messaging:`` block is the
    agent's own (the guide's examples are agents' configs): the appliance taking it would make
    the broker throw one of the two out whenever the other connects, so it derives its own."""
    mqtt, notes = bridge.mqtt, tuple[str, ...]()
    if agent_form and mqtt.client_id:
        notes = (
            f"messaging.client_id {mqtt.client_id!r} is the agent's own client id; the "
            "appliance uses its own (two clients with one id throw each other off the broker)",
        )
        mqtt = dataclasses.replace(mqtt, client_id=None)
    return UplinkConfig(
        name=BRIDGE_UPLINK,
        protocol="mqtt",
        link=mqtt,
        routes=bridge.routes,
        buffer=bridge.buffer,
        max_payload=bridge.max_payload,
        notes=notes,
        source=BRIDGE_PATH,
    )


def _uplink(builder: _Builder, raw: Any, path: str) -> UplinkConfig | None:
    """One ``uplinks:`` entry: the common keys, and the rest as the protocol's own."""
    choices = " | ".join(sorted(UPLINK_PROTOCOLS))
    if not isinstance(raw, Mapping):
        builder.fail(path, raw, f"expected a mapping with protocol: ({choices}) and its keys")
        return None
    written = raw.get("protocol")
    if written is None:
        builder.fail(f"{path}.protocol", None, f"expected one of: {choices}")
        return None
    protocol = builder.substitute(str(written), f"{path}.protocol")
    cls = UPLINK_PROTOCOLS.get(protocol)
    if cls is None:
        builder.fail(f"{path}.protocol", written, f"unknown protocol; expected one of: {choices}")
        return None
    own_fields = {f.name for f in dataclasses.fields(cls)}
    common = {k: v for k, v in raw.items() if k in UPLINK_KEYS and k != "protocol"}
    own = {k: v for k, v in raw.items() if k not in UPLINK_KEYS or k in own_fields}
    link = builder.build(cls, own, path)
    base: UplinkConfig = builder.build(UplinkConfig, common, path)
    return dataclasses.replace(
        base, name=base.name if "name" in common else protocol, protocol=protocol, link=link
    )


def _loop_checks(builder: _Builder, listed: list[tuple[str, UplinkConfig]]) -> None:
    """Two uplinks on one broker, one bringing in what the other sends out: each message
    would go round bus -> broker -> bus for ever (each uplink's loop guard knows only what it
    injected itself)."""
    for index, (first_path, first) in enumerate(listed):
        for second_path, second in listed[index + 1 :]:
            if first.where != second.where or getattr(first.link, "broker_address", None) is None:
                continue
            for (in_path, inbound), (out_path, outbound) in (
                ((first_path, first), (second_path, second)),
                ((second_path, second), (first_path, first)),
            ):
                found = _looping_pair(inbound.routes, outbound.routes)
                if found is not None:
                    in_index, out_index = found
                    builder.fail(
                        f"{_routes_path(out_path)}[{out_index}]",
                        outbound.routes[out_index].topic,
                        f"{_described(in_path)} and {_described(out_path)} both reach "
                        f"{first.where}: what {_routes_path(in_path)}[{in_index}] brings in "
                        "from there this route sends back, and it comes in again, for ever; "
                        "narrow one of the two routes or make it one-way",
                    )
                    return


def _routes_path(path: str) -> str:
    return f"{path}.routes"


def _levels(topic_filter: str) -> tuple[str, ...]:
    return tuple(topic_filter.split("/"))


def _looping_pair(
    inbound: tuple[Route, ...], outbound: tuple[Route, ...]
) -> tuple[int, int] | None:
    """(index of an ``in`` route, index of an ``out`` route of the other uplink) that carry a
    common topic round the loop, or None."""
    for in_index, first in enumerate(inbound):
        if first.direction == "out":
            continue
        for out_index, second in enumerate(outbound):
            if second.direction == "in":
                continue
            local = can_share_a_topic(
                _levels(first.local_prefix + first.topic),
                _levels(second.local_prefix + second.topic),
            )
            remote = can_share_a_topic(
                _levels(first.remote_prefix + first.topic),
                _levels(second.remote_prefix + second.topic),
            )
            if local and remote:
                return in_index, out_index
    return None


def _cross_checks(builder: _Builder, bus: BusConfig, config: EdgeConfig) -> None:
    """Constraints between keys, which no single field check can see."""
    if bus.port == bus.backend_port:
        builder.fail("messaging.backend_port", bus.backend_port, "must differ from messaging.port")
    export = config.discovery.federation.export_port
    if (
        config.discovery.enabled
        and config.discovery.federation.enabled
        and export in (bus.port, bus.backend_port)
    ):
        builder.fail("discovery.federation.export_port", export, "must differ from the bus ports")
    if config.web.enabled and config.web.port in (bus.port, bus.backend_port):
        builder.fail("web.port", config.web.port, "must differ from the bus ports")
    certs = config.certificates
    if (certs.certfile is None) != (certs.keyfile is None):
        builder.fail(
            "certificates.keyfile" if certs.keyfile is None else "certificates.certfile",
            None,
            "certfile and keyfile go together: set both or neither",
        )
    _route_checks(builder, config.bridge.routes, "bridge.routes")
    _tls_pair_check(builder, config.bridge.mqtt, "bridge.mqtt")


def _route_checks(builder: _Builder, routes: tuple[Route, ...], path: str) -> None:
    """What a route's keys mean together: the prefixed filters must exist on their side."""
    for index, route in enumerate(routes):
        where = f"{path}[{index}]"
        written = {
            side: builder.as_written(f"{where}.{side}", getattr(route, side))
            for side in ("topic", "local_prefix", "remote_prefix")
        }
        if has_mqtt_forbidden_character(route.remote_prefix + route.topic):
            builder.fail(
                f"{where}.topic",
                written["remote_prefix"] + written["topic"],
                "a broker filter without control characters or Unicode "
                "non-characters (brokers disconnect a client that sends them)",
            )
        for side in ("local_prefix", "remote_prefix"):
            prefix = getattr(route, side)
            if prefix and _topic_filter(prefix + route.topic) is not None:
                builder.fail(
                    f"{where}.{side}",
                    prefix,
                    f"{side} + topic must be a valid filter, and "
                    f"{written[side] + written['topic']!r} is not (end the prefix "
                    "with '/')",
                )


def _tls_pair_check(builder: _Builder, link: object, path: str) -> None:
    tls = getattr(link, "tls_params", None)
    if tls is not None and (tls.certfile is None) != (tls.keyfile is None):
        builder.fail(
            f"{path}.tls_params",
            "certfile/keyfile",
            "client certificate and key go together: set both or neither",
        )


def default_node_name() -> str:
    """The host name, reduced to what topics and mDNS names accept."""
    name = re.sub(r"[^A-Za-z0-9\-_]", "-", socket.gethostname().split(".")[0])[:63].strip("-_")
    return name or "argentic-edge"


def default_data_dir() -> Path:
    """Where keys, certificates and state live when the configuration does not say."""
    if "ARGENTIC_EDGE_DATA_DIR" in os.environ:
        return Path(os.environ["ARGENTIC_EDGE_DATA_DIR"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "argentic-edge"


# --- reading YAML within bounds -------------------------------------------------------------

MAX_DOCUMENT_BYTES = 1024 * 1024  # a configuration is a few KiB
MAX_NODES = 20_000  # values once YAML aliases are expanded: 713 bytes can otherwise mean 9**9
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _yaml_problem(exc: Exception, source: str) -> Problem:
    if isinstance(exc, RecursionError):
        return Problem(source, None, "the document is nested too deeply")
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    reason = getattr(exc, "problem", None) or str(exc)
    return Problem(source, None, f"is not valid YAML{where}: {reason}")


def _node_problems(root: yaml.Node) -> list[Problem]:
    """Duplicate keys and aliases inside themselves, walking aliases within MAX_NODES values.

    PyYAML shares an aliased node instead of copying it, so loading is cheap, but everything
    that walks the result (validation, error messages, the editor) pays for every expansion.
    """
    problems: list[Problem] = []
    budget = [MAX_NODES]

    def walk(node: yaml.Node, path: str, open_nodes: frozenset[int]) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(
                [
                    Problem(
                        path,
                        None,
                        f"the document expands to more than "
                        f"{MAX_NODES} values (YAML aliases); write "
                        "it out plainly",
                    )
                ]
            )
        if id(node) in open_nodes:
            problems.append(Problem(path, None, "a YAML alias contains itself; write it out"))
            return
        inner = open_nodes | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], yaml.Node] = {}
            for key, value in node.value:
                label = key.value if isinstance(key, yaml.ScalarNode) else f"<{key.tag}>"
                key_path = f"{path}.{label}" if path else str(label)
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    first = seen.setdefault((key.tag, key.value), key)
                    if first is not key:
                        problems.append(
                            Problem(
                                key_path,
                                key.value,
                                (
                                    f"the key is given twice (lines {first.start_mark.line + 1} and "
                                    f"{key.start_mark.line + 1}); keep one"
                                ),
                            )
                        )
                walk(value, key_path, inner)
        elif isinstance(node, yaml.SequenceNode):
            for index, value in enumerate(node.value):
                walk(value, f"{path}[{index}]", inner)

    walk(root, "", frozenset())
    return problems


def compose_yaml(text: str, source: str = "") -> yaml.Node | None:
    """The YAML node tree of ``text``: at most MAX_DOCUMENT_BYTES and MAX_NODES values, no
    duplicate keys, no alias inside itself. ConfigError lists what is wrong (``source`` names
    the file in syntax and size problems)."""
    if len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            [Problem(source, None, f"expected a document of at most {MAX_DOCUMENT_BYTES} bytes")]
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError([_yaml_problem(exc, source)]) from None
    problems = _node_problems(root) if root is not None else []
    if problems:
        raise ConfigError(problems)
    return root


def parse_yaml(text: str, source: str = "") -> Any:
    """The raw document of ``text`` (dicts, lists, scalars), within compose_yaml's bounds."""
    root = compose_yaml(text, source)
    if root is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError([_yaml_problem(exc, source)]) from None
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file, turning I/O and syntax errors into a ConfigError naming the file."""
    file = Path(path)
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_DOCUMENT_BYTES + 1)  # never more than the bound in memory
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ConfigError(
                [
                    Problem(
                        str(file),
                        None,
                        f"expected a document of at most {MAX_DOCUMENT_BYTES} bytes",
                    )
                ]
            )
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(file), None, f"cannot read the file: {exc}")]) from None
    return parse_yaml(text, str(file))


def find_config_file(given: str | os.PathLike[str] | None) -> str | None:
    """The file every command reads: the one given, else the one the web editor saved in the
    data directory, else none (the embedded defaults). One rule, so ``pub`` after a port change
    in the editor talks to the port ``run`` listens on."""
    if given:
        return str(given)
    saved = saved_config_path(default_data_dir())
    return str(saved) if saved.is_file() else None


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> EdgeConfig:
    """The configuration from a YAML file, or the embedded defaults when there is none."""
    return parse_config(read_yaml(path) if path is not None else None, env)


def file_problems(config: EdgeConfig) -> list[Problem]:
    """Referenced files that do not exist or cannot be read: check-config's extra pass.

    Kept out of parsing on purpose: a configuration may be written before its certificates
    are copied into place, and the running appliance reports a missing file when it needs it.
    """
    problems = []
    references = [
        ("certificates.certfile", config.certificates.certfile),
        ("certificates.keyfile", config.certificates.keyfile),
    ]
    for uplink in config.uplinks:
        tls = getattr(uplink.link, "tls_params", None)
        if tls is not None:
            source = "bridge.mqtt" if uplink.source == BRIDGE_PATH else uplink.source
            references += [
                (f"{source}.tls_params.{name}", getattr(tls, name))
                for name in ("ca_certs", "certfile", "keyfile")
            ]
    for key, value in references:
        if value is None:
            continue
        file = Path(value)
        if not file.is_file():
            problems.append(Problem(key, value, "file does not exist"))
        elif not os.access(file, os.R_OK):
            problems.append(Problem(key, value, "file is not readable"))
    return problems


def to_dict(config: Any, *, reveal: bool = False) -> Any:
    """Plain data (for YAML/JSON dumps); secrets masked unless ``reveal`` is asked for."""
    if isinstance(config, UplinkConfig):  # one flat mapping, as it is written
        flat = {"name": config.name, "protocol": config.protocol}
        flat.update(to_dict(config.link, reveal=reveal))
        for key in ("routes", "buffer", "max_payload"):
            flat[key] = to_dict(getattr(config, key), reveal=reveal)
        return flat
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {
            f.name: to_dict(getattr(config, f.name), reveal=reveal)
            for f in dataclasses.fields(config)
            if not f.metadata.get("derived")
        }
    if isinstance(config, Secret):
        return config.reveal() if reveal else MASK
    if isinstance(config, tuple):
        return [to_dict(item, reveal=reveal) for item in config]
    if isinstance(config, Mapping):
        return {key: to_dict(value, reveal=reveal) for key, value in config.items()}
    return config


def dump_yaml(config: EdgeConfig) -> str:
    """The effective configuration as YAML, secrets masked (check-config prints this), after
    the uplinks' notes as comments (what reading the file decided for the user)."""
    notes = [f"# note: uplink {u.name!r}: {note}\n" for u in config.uplinks for note in u.notes]
    return "".join(notes) + yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
