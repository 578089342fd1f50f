"""make_link: the one place that knows which module implements which uplink protocol.

Each branch imports its protocol's module (and so its client library) only when an uplink of
that protocol is made: a disabled or absent uplink costs no import and no memory. The Kafka,
Redis and RabbitMQ issues add their branch here and their settings to config.UPLINK_PROTOCOLS.
"""

from __future__ import annotations

from argentic_edge.bridge.link import Link, LinkCallbacks, LinkError
from argentic_edge.config import KafkaConfig, MqttConfig, RabbitConfig, RedisConfig, UplinkConfig


def make_link(
    uplink: UplinkConfig,
    callbacks: LinkCallbacks,
    *,
    client_id: str,
    node_id: str,
    fallback: int = 0,
    will: tuple[str, bytes] | None = None,
) -> Link:
    """A new link for ``uplink``.

    ``client_id`` is the appliance's own on that broker (never an agent's: config.py derives
    it); ``node_id`` names this appliance where a protocol wants a stable name (a consumer
    group); ``fallback`` counts how often the broker asked for an older protocol variant;
    ``will`` is the retained message an MQTT broker publishes if we vanish.
    """
    if uplink.protocol == "mqtt":
        from argentic_edge.bridge.mqtt import MqttLink

        assert isinstance(uplink.link, MqttConfig)
        return MqttLink(uplink.link, callbacks, client_id=client_id, mqtt5=fallback == 0, will=will)
    if uplink.protocol == "kafka":
        from argentic_edge.bridge.kafka import KafkaLink

        assert isinstance(uplink.link, KafkaConfig)
        return KafkaLink(uplink.link, callbacks, client_id=client_id, node_id=node_id)
    if uplink.protocol == "redis":
        from argentic_edge.bridge.redis import RedisLink

        assert isinstance(uplink.link, RedisConfig)
        return RedisLink(uplink.link, callbacks, client_id=client_id, node_id=node_id)
    if uplink.protocol == "rabbitmq":
        from argentic_edge.bridge.rabbitmq import RabbitLink

        assert isinstance(uplink.link, RabbitConfig)
        return RabbitLink(uplink.link, callbacks, client_id=client_id, node_id=node_id)
    raise LinkError(f"uplink {uplink.name}: no link for protocol {uplink.protocol!r} ({node_id})")
