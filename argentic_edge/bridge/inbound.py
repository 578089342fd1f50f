"""What a non-MQTT link checks in a message from the other side before the service sees it.

MQTT guarantees a UTF-8 topic name without wildcards; Redis channels, stream entries and AMQP
exchanges guarantee none of that, and Argentic's Redis and RabbitMQ drivers always carry a JSON
document. A message that breaks these rules could only confuse the agents on the bus, so the link
drops it here (acknowledged, so the broker does not send it again), counts it by reason and logs
the first one of each reason. The service's own checks (spaces, empty levels, size) come after.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

log = logging.getLogger(__name__)

INBOUND_DROP_REASONS = {
    "invalid_utf8": "messages whose channel, stream or exchange name is not valid UTF-8",
    "wildcard_in_topic": "messages whose name contains + or # (an MQTT topic cannot)",
    "not_json": "messages whose payload is not a JSON document (Argentic's drivers send JSON)",
    "malformed_entry": "stream entries without the fields the uplink writes (topic, payload)",
}


class InboundChecks:
    """Per-link counters of dropped inbound messages, with one log line per reason."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.dropped: Counter[str] = Counter()

    def topic(self, raw: bytes) -> str | None:
        """The MQTT-form topic of a raw broker name, or None (dropped and counted)."""
        try:
            topic = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.drop("invalid_utf8", raw)
            return None
        if "+" in topic or "#" in topic:
            self.drop("wildcard_in_topic", topic)
            return None
        return topic

    def payload(self, topic: str, payload: bytes) -> bool:
        """True when the payload is JSON; else dropped and counted."""
        try:
            json.loads(payload)
        except ValueError:
            self.drop("not_json", topic)
            return False
        return True

    def drop(self, reason: str, example: object) -> None:
        self.dropped[reason] += 1
        if self.dropped[reason] == 1:
            log.warning(
                "%s: dropped %s, e.g. %.200r (logged once; counted in the status)",
                self.where,
                INBOUND_DROP_REASONS[reason],
                example,
            )
