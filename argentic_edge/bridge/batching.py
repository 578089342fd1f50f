"""The part of a link that turns one-at-a-time ``publish()`` calls into pipelined writes.

Redis and RabbitMQ clients are awaited per command. Awaiting each publication would cost a round
trip per message; instead ``publish()`` only appends, and one writer task wakes on the next loop
tick and hands everything collected since to ``_flush`` at once (a Redis pipeline, a run of AMQP
frames), together with the acknowledgements the service gave meanwhile. While a flush runs, the
next batch collects. A connection error in the writer, a reader or the keepalive ends the
session once, through ``on_lost``; what was not settled then goes back to the service's outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from argentic_edge.bridge.inbound import InboundChecks
from argentic_edge.bridge.link import LinkCallbacks, Publication

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # publications per flush: bounds one pipeline's memory and its reply
WINDOW = 1000  # QoS>=1 publications the service may keep in flight


class BatchingLink:
    """Shared lifecycle of the Redis and RabbitMQ links (subclasses implement ``_flush``)."""

    def __init__(self, callbacks: LinkCallbacks, where: str) -> None:
        self._callbacks = callbacks
        self._where = where
        self.inbound = InboundChecks(where)
        self._pending: list[Publication] = []
        self._acks: list[Any] = []  # what _flush needs to acknowledge one message
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session = 0  # bumped per connection: late callbacks of an old one are ignored
        self._up = False
        self.batches = 0
        self.published = 0

    @property
    def where(self) -> str:
        return self._where

    def publish(self, publication: Publication) -> None:
        self._pending.append(publication)
        self._wake.set()

    def _acknowledge(self, session: int, item: object) -> None:
        """Queue one acknowledgement for the next flush, if its session is still the current
        (a delivery tag or a pending entry of an ended connection means nothing on the next)."""
        if self._up and session == self._session:
            self._acks.append(item)
            self._wake.set()

    def _begin(self) -> int:
        """Mark a new session up and start its writer; returns the session number."""
        self._session += 1
        self._up = True
        self._spawn(self._writer(self._session))
        return self._session

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _writer(self, session: int) -> None:
        while session == self._session:
            await self._wake.wait()
            self._wake.clear()
            while (self._pending or self._acks) and session == self._session:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                acks, self._acks = self._acks, []
                try:
                    await self._flush(batch, acks)
                except Exception as exc:  # any client error ends the session
                    self._lost(session, f"write failed: {exc or type(exc).__name__}")
                    return
                self.batches += 1
                self.published += len(batch)

    async def _flush(self, batch: list[Publication], acks: list[Any]) -> None:
        raise NotImplementedError

    def _settle(self, token: object, problem: str | None = None) -> None:
        self._callbacks.on_settled(token, problem)

    def _lost(self, session: int, reason: str) -> None:
        """End session ``session`` once; unsettled publications are the service's again."""
        if session != self._session or not self._up:
            return
        self._up = False
        self._session += 1
        self._pending.clear()
        self._acks.clear()
        self._wake.set()
        log.info("%s: connection lost: %s", self._where, reason)
        self._callbacks.on_lost(reason)

    async def _stop_tasks(self) -> None:
        self._up = False
        self._session += 1
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _cancel_tasks(self) -> None:
        self._up = False
        self._session += 1
        for task in list(self._tasks):
            task.cancel()

    def batching_status(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "per_batch": round(self.published / self.batches, 1) if self.batches else None,
            "dropped_inbound": dict(self.inbound.dropped),
        }
