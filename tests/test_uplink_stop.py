"""Stopping an uplink at the instant its broker refuses the connection.

Python 3.11's ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop turn
as the completion of the future it waits for. A broker refusing a connection (a wrong
password) just as the appliance stops is that moment: the connection task went on backing off
and retrying, and the appliance never exited (seen under load in CI: a taken web port made the
start fail and the stop hang). This drives the real ``Uplink`` service with a link whose
connect is refused in exactly that turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq

from argentic_edge.bridge.link import ConnectError, LinkCallbacks, LinkSession, Publication
from argentic_edge.bridge.service import Uplink
from argentic_edge.bus.proxy import BusEndpoints
from tests.support.config import uplinks_only


class RefusedLink:
    """A link whose first connect waits (with ``wait_for``, as the MQTT link waits for CONNACK)
    until the test refuses it; every later one is refused at once."""

    where = "refusing-broker:1883"

    def __init__(self) -> None:
        self.pending: asyncio.Future[LinkSession] | None = None
        self.attempts = 0

    async def connect(self) -> LinkSession:
        self.attempts += 1
        if self.pending is not None:
            raise ConnectError("Not authorized")
        self.pending = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(self.pending, 30)

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> dict[str, str]:
        return {}

    def publish(self, publication: Publication) -> None:
        raise AssertionError("never connected")

    async def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {}


async def test_a_refusal_in_the_instant_of_stopping_does_not_keep_the_uplink_running(
    tmp_path: Path,
) -> None:
    config = uplinks_only(
        tmp_path,
        {"protocol": "mqtt", "broker_address": "127.0.0.1", "connect_retry_delay": 0.05},
    )
    link = RefusedLink()

    def make_link(callbacks: LinkCallbacks, fallback: int) -> RefusedLink:
        return link

    context: zmq.Context[Any] = zmq.Context()
    uplink = Uplink(
        config.uplinks[0],
        config.messaging,
        make_link=make_link,  # type: ignore[arg-type]  # a stand-in with the Link's methods
        context=context,
        endpoints=BusEndpoints(
            "tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "inproc://no-front", "inproc://no-back"
        ),
    )
    try:
        await uplink.start()
        while link.pending is None:
            await asyncio.sleep(0.01)
        link.pending.set_exception(ConnectError("Not authorized"))
        stopping = asyncio.create_task(uplink.stop())  # cancels in the very turn of the refusal
        done, _ = await asyncio.wait({stopping}, timeout=3)
        assert stopping in done, f"stop() still waiting after 3 s ({link.attempts} attempts)"
        assert uplink.state == "stopped"
        attempts = link.attempts
        await asyncio.sleep(0.3)  # six retry delays
        assert link.attempts == attempts, "the uplink went on connecting after it stopped"
    finally:
        context.destroy(linger=0)  # closes what a stuck uplink still holds
