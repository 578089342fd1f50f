"""make_link: the one place that knows which module implements which uplink protocol.

Each branch imports its protocol's module (and so its client library) only when an uplink of
that protocol is made: a disabled or absent uplink costs no import and no memory. The Kafka,
Redis and RabbitMQ issues add their branch here and their settings to config.UPLINK_PROTOCOLS.
"""

from __future__ import annotations

from collections.abc import Callable

from argentic_edge.bridge.link import Link, LinkCallbacks, LinkError
from argentic_edge.config import KafkaConfig, MqttConfig, RabbitConfig, RedisConfig, UplinkConfig


def make_link(
    uplink: UplinkConfig,
    callbacks: LinkCallbacks,
    *,
    client_id: str,
    node_id: Callable[[], str],
    fallback: int = 0,
    will: tuple[str, bytes] | None = None,
) -> Link:
    """A new link for ``uplink``.

    ``client_id`` is the appliance's own on that broker (never an agent's: config.py derives
    it); ``node_id()`` is this appliance's stable id (its CURVE identity, not its name), asked
    only by the protocols that name the appliance to the broker: the Kafka record key, its
    own-record header and consumer group, the Redis streams group and consumer. A name would
    not do: after a rename a new Kafka group reads from ``auto_offset_reset`` again and a new
    Redis consumer never gets what the old one was handed, and two appliances left at the same
    default host name would share a group and split it, each dropping the other's records as
    its own; ``fallback`` counts how often the broker asked for an older protocol variant;
    ``will`` is the retained message an MQTT broker publishes if we vanish.
    """
    if uplink.protocol == "mqtt":
        from argentic_edge.bridge.mqtt import MqttLink

        assert isinstance(uplink.link, MqttConfig)
        return MqttLink(uplink.link, callbacks, client_id=client_id, mqtt5=fallback == 0, will=will)
    if uplink.protocol == "kafka":
        from argentic_edge.bridge.kafka import KafkaLink

        assert isinstance(uplink.link, KafkaConfig)
        return KafkaLink(uplink.link, callbacks, client_id=client_id, node_id=node_id())
    if uplink.protocol == "redis":
        from argentic_edge.bridge.redis import RedisLink

        assert isinstance(uplink.link, RedisConfig)
        node = node_id()
        return RedisLink(
            uplink.link,
            callbacks,
            client_id=client_id,
            node_id=node,
            consumer=f"{node}-{uplink.name}",
        )
    if uplink.protocol == "rabbitmq":
        from argentic_edge.bridge.rabbitmq import RabbitLink

        assert isinstance(uplink.link, RabbitConfig)
        return RabbitLink(uplink.link, callbacks, client_id=client_id)
    raise LinkError(f"uplink {uplink.name}: no link for protocol {uplink.protocol!r}")
