"""A callbacks harness that drives one ``Link`` the way the uplink service does.

It records what the link reports (messages, settlements, losses), acknowledges each received
message at once (the service does so once the message is on the bus) and lets a test wait for
a count with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from argentic_edge.bridge.link import Acknowledge, LinkCallbacks, Publication


@dataclass
class Recorder:
    """What a link reported; ``auto_ack`` False keeps the acks for the test to call."""

    auto_ack: bool = True
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    settled: dict[object, str | None] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    unacked: list[Acknowledge] = field(default_factory=list)

    def callbacks(self) -> LinkCallbacks:
        return LinkCallbacks(self._message, self._settled, self.lost.append)

    def _message(self, topic: str, payload: bytes, ack: Acknowledge | None) -> None:
        self.messages.append((topic, payload))
        if ack is not None:
            if self.auto_ack:
                ack()
            else:
                self.unacked.append(ack)

    def _settled(self, token: object, problem: str | None) -> None:
        self.settled[token] = problem

    def topics(self) -> list[str]:
        return [topic for topic, _ in self.messages]

    async def wait(self, condition: object, timeout: float = 15.0) -> None:
        """Wait until ``condition()`` is true; fail with what was recorded if it never is."""
        deadline = time.monotonic() + timeout
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out: {len(self.messages)} messages, {len(self.settled)} settled, "
                    f"lost {self.lost}; last {self.messages[-3:]}"
                )
            await asyncio.sleep(0.02)


def publication(topic: str, number: int, qos: int = 1) -> Publication:
    """A JSON publication whose token is its number."""
    body = json.dumps({"n": number, "type": "test"}).encode()
    return Publication(topic=topic, payload=body, qos=qos, retain=False, token=number)
